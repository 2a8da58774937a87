"""Fuzzing from the OpenAPI document: schemathesis against a live `serve --demo`.

Every operation of the document gets generated requests (a customer's token on /api/shop,
the admin token on /api/admin). Each answer must be below 500, JSON (but where the document
declares another media type: /metrics, the storefront's pages), and conform to the document: its status is one the operation lists, its body matches
that status's schema, its headers are the declared ones.

300 requests by default (about a minute here); FUZZ_REQUESTS=3000 (or more) for a long run,
FUZZ_NEGATIVE=1 to mix in invalid requests (each must get one of its documented 4xx).
"""

from __future__ import annotations

import os

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st
from live_service import LiveService
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

REQUESTS = int(os.environ.get("FUZZ_REQUESTS", "300"))
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_headers_conformance, response_schema_conformance]


def _strategy(operation):
    """Valid requests, and (FUZZ_NEGATIVE=1) invalid ones too: each must get its documented 4xx."""
    positive = operation.as_strategy()
    if os.environ.get("FUZZ_NEGATIVE") != "1":
        return positive
    try:
        return positive | operation.as_strategy(generation_mode=GenerationMode.NEGATIVE)
    except Exception:  # noqa: BLE001 -- an operation with nothing to get wrong
        return positive


def _declared_media(document: dict, operation, status: int) -> list[str]:
    """The media types the document gives this operation's answer with `status` (JSON when undeclared)."""
    answers = document["paths"][operation.path][operation.method.lower()]["responses"]
    answer = answers.get(str(status))
    if answer is None:
        return ["application/json"]  # an undocumented status: schemathesis reports it too
    return list(answer.get("content", {}))


def _content_type(headers) -> str:
    for name, value in headers.items():
        if name.lower() == "content-type":
            return value[0] if isinstance(value, list) else value
    return ""


def _budget(operations: list, total: int) -> dict[str, int]:
    """Requests per operation: an even share, the checkout (the deepest path) twice as many."""
    weights = {op.label: 2 if op.path == "/api/shop/checkout/cart" else 1 for op in operations}
    share = total / sum(weights.values())
    budget = {label: max(1, int(share * weight)) for label, weight in weights.items()}
    budget[next(iter(budget))] += max(0, total - sum(budget.values()))
    return budget


def test_every_operation_answers_as_the_document_says(tmp_path):
    with LiveService(tmp_path, demo=True) as service:
        customer = service.demo_token
        document = requests.get(service.base_url + "/api/openapi.json", timeout=30).json()
        schema = schemathesis.openapi.from_dict(document)
        operations = [result.ok() for result in schema.get_all_operations()]
        assert len(operations) == sum(1 for path in document["paths"].values() for verb in path
                                      if verb in ("get", "post", "put", "patch", "delete"))
        session = requests.Session()
        sent: list[str] = []
        problems: list[str] = []

        def fuzz(operation, examples: int, round_number: int) -> int:
            """Send up to `examples` generated requests to `operation`; how many were sent."""
            token = service.admin_token if operation.path.startswith("/api/admin") else customer
            before = len(sent)

            @seed(round_number)
            @settings(max_examples=examples, deadline=None, database=None,
                      suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.generate])
            @given(case=_strategy(operation), with_token=st.sampled_from([True, True, True, False]))
            def run(case, with_token):
                headers = {"Authorization": f"Token {token}"} if with_token else {}
                response = case.call(base_url=service.base_url, session=session, headers=headers, timeout=60)
                sent.append(operation.label)
                media = _content_type(response.headers)
                declared = _declared_media(document, operation, response.status_code)
                if declared and "application/json" in declared and not media.startswith("application/json"):
                    problems.append(f"{operation.label}: {response.status_code} answered {media!r}, not JSON")
                try:
                    case.validate_response(response, checks=CHECKS, headers=headers)
                except (Exception, BaseExceptionGroup) as exc:  # noqa: BLE001 -- all are reported, the run goes on
                    problems.append(f"{operation.label}: {exc}\n  request: {case.as_curl_command(headers)}")

            run()
            return len(sent) - before

        # Operations with few possible requests (GET /health) run out early; what they leave
        # goes to the others in the next round, until the whole budget is spent.
        active = list(operations)
        for round_number in range(10):
            left = REQUESTS - len(sent)
            if left <= 0 or not active:
                break
            budget = _budget(active, left)
            active = [op for op in active if fuzz(op, budget[op.label], round_number) >= budget[op.label]]
        assert len(sent) >= REQUESTS, f"only {len(sent)} requests were sent"
        assert not problems, f"{len(problems)} answers break the document:\n" + "\n".join(sorted(set(problems))[:20])
        server_errors = [line for line in service.logs().splitlines() if "Traceback" in line]
        assert not server_errors, service.logs()[-5000:]


@pytest.mark.parametrize("total, operations", [(300, 20), (3000, 20)])
def test_the_budget_spends_every_request(total, operations):
    class Op:
        def __init__(self, index):
            self.label = f"GET /{index}"
            self.path = "/api/shop/checkout/cart" if index == 0 else f"/{index}"

    budget = _budget([Op(i) for i in range(operations)], total)
    assert sum(budget.values()) == total and min(budget.values()) >= 1
