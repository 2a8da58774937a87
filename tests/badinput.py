"""Shared bad-input cases for the endpoint tests: each must be a JSON 400 changing nothing."""

MALFORMED = [b"{", b"[1, 2]", b'"text"', b"null", b"", b'{"a": NaN}', b"\xff\xfe", b"[" * 5000]

OPERATORS = [{"$gt": ""}, {"$ne": None}, {"$where": "1"}, ["$gt"], {"a.b": 1}]


async def snapshot(storage) -> dict:
    """Everything the API can change, to compare before and after a refused request."""
    out = {}
    for name in ("customers", "products", "orders", "counters"):
        docs = await storage.db[name].find({}).sort("_id", 1).to_list(None)
        out[name] = docs
    return out


def is_400(r) -> bool:
    return r.status == 400 and isinstance(r.body, dict) and isinstance(r.body.get("error"), str)


async def assert_refused(shop, request, cases, status=400):
    """Send every (body or raw bytes) case with `request`; each refused, nothing changed."""
    before = await snapshot(shop.storage)
    for case in cases:
        if isinstance(case, bytes):
            r = await request(raw_body=case, headers={"Content-Type": "application/json"})
        else:
            r = await request(body=case)
        assert r.status == status and isinstance(r.body, dict) and isinstance(r.body.get("error"), str), (case, r)
        if isinstance(case, dict) and status == 400 and r.body.get("fields") is None:
            # A well-formed object that fails validation names the fields.
            raise AssertionError(f"no fields for {case!r}: {r}")
    assert await snapshot(shop.storage) == before
