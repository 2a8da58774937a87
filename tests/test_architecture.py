"""The code's shape, as docs/architecture.md promises it: checked by reading the source."""

from __future__ import annotations

import ast
from pathlib import Path

import checkout_server

PACKAGE = Path(checkout_server.__file__).parent


def modules() -> dict[str, ast.Module]:
    """{dotted module name: its parsed source} for every module of checkout_server."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = ast.parse(path.read_text(), str(path))
    return found


def test_every_reader_of_the_time_asks_the_one_clock():
    # Wall-clock reads anywhere but clock.py escape a test that moves the clock.
    wall_clock = {("datetime", "now"), ("datetime", "utcnow"), ("time", "time"), ("date", "today")}
    offenders = []
    for name, tree in modules().items():
        if name == "checkout_server.clock":
            continue
        for node in ast.walk(tree):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and isinstance(node.func.value, ast.Name)
                    and (node.func.value.id, node.func.attr) in wall_clock):
                offenders.append(f"{name}:{node.lineno} {node.func.value.id}.{node.func.attr}()")
    assert offenders == []
