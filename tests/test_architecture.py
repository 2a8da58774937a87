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


PROVIDER_METHODS = {"start", "verify_return", "check", "parse_notification", "supports", "quote", "startup",
                    "close", "refund", "cancel"}
# The one module that calls providers; the plugin API and the test kit are the providers' own side.
CALLS_PROVIDERS = "checkout_server.payments.provider_calls"
PROVIDERS_SIDE = ("checkout_server.plugin", "checkout_server.testing")


def _names_a_provider(node: ast.expr) -> bool:
    """`provider`, `x.provider`, `method.provider`, `payment_provider`: anything named for one
    (not the `provider_calls` module)."""
    if isinstance(node, ast.Name):
        return node.id.lower().endswith("provider")
    if isinstance(node, ast.Attribute):
        return node.attr.lower().endswith("provider")
    return False


def test_only_provider_calls_calls_a_provider_method():
    offenders = []
    for name, tree in modules().items():
        if name == CALLS_PROVIDERS or name.startswith(PROVIDERS_SIDE):
            continue
        for node in ast.walk(tree):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr in PROVIDER_METHODS and _names_a_provider(node.func.value)):
                offenders.append(f"{name}:{node.lineno} {ast.unparse(node.func)}()")
    assert offenders == [], "call providers through payments/provider_calls.py"


def test_the_scan_for_provider_calls_sees_one():
    tree = ast.parse("async def f(method):\n    await method.provider.check(order)\n")
    [call] = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)]
    assert call.func.attr in PROVIDER_METHODS and _names_a_provider(call.func.value)


def _operator_keys(tree: ast.AST) -> list[tuple[int, str]]:
    """Dict keys (literal or dict(...) keywords) spelling a MongoDB operator: "$in", "$set", ..."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            found += [(key.lineno, key.value) for key in node.keys
                      if isinstance(key, ast.Constant) and isinstance(key.value, str) and key.value.startswith("$")]
    return found


def test_no_module_outside_storage_builds_a_mongodb_filter():
    offenders = [f"{name}:{line} {key}" for name, tree in modules().items()
                 if not name.startswith("checkout_server.storage")
                 for line, key in _operator_keys(tree)]
    assert offenders == []


def test_the_scan_for_filters_sees_one():
    assert _operator_keys(ast.parse('q = {"status": {"$in": ["HOLD"]}}')) == [(1, "$in")]


def _imports(name: str, tree: ast.Module) -> set[str]:
    """The checkout_server modules `name` imports at module level (not inside functions)."""
    package = name if _is_package(name) else name.rpartition(".")[0]
    found = set()
    for node in tree.body:
        for stmt in [node, *(n for n in ast.walk(node) if isinstance(n, ast.If | ast.Try))]:
            if isinstance(stmt, ast.Import):
                found |= {alias.name for alias in stmt.names}
            elif isinstance(stmt, ast.ImportFrom):
                base = stmt.module or ""
                if stmt.level:
                    base = ".".join(package.split(".")[: len(package.split(".")) - stmt.level + 1] + ([base] if base else []))
                found.add(base)
                found |= {f"{base}.{alias.name}" for alias in stmt.names}
    return {m for m in found if m.startswith("checkout_server")}


def _is_package(name: str) -> bool:
    return (PACKAGE.parent / name.replace(".", "/") / "__init__.py").exists()


def import_graph() -> dict[str, set[str]]:
    """{module: the checkout_server modules it imports at module level}."""
    trees = modules()
    return {name: {m for m in _imports(name, tree) if m in trees and m != name} for name, tree in trees.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1 on the path, 2 done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start)):
            return found
    return None


def test_the_import_graph_has_no_cycles():
    # A package's __init__ importing its own modules is the package's public face, not a cycle.
    graph = {name: {m for m in deps if not m.startswith(name + ".")} for name, deps in import_graph().items()}
    assert _cycle(graph) is None, " -> ".join(_cycle(graph))


def test_the_cycle_check_finds_one():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_storage_imports_nothing_of_ours_but_the_clock():
    # The bottom floor: the service's time comes from the one leaf module, nothing else
    # (`from checkout_server import clock` also names the root package, which holds a version).
    allowed = {"checkout_server", "checkout_server.clock"}
    outside = {f"{name} -> {dep}" for name, deps in import_graph().items() if name.startswith("checkout_server.storage")
               for dep in deps if not dep.startswith("checkout_server.storage") and dep not in allowed}
    assert outside == set()


def test_the_clock_is_a_leaf():
    assert import_graph()["checkout_server.clock"] == set()


# The packages from the top down (docs/architecture.md): each imports only those after it.
# (`testing/` is the kit on top of everything; cli, app, config, schemas are the app's own.)
LAYERS = ("handlers", "checkout", "methods", "payments", "stock", "plugin", "storage", "clock")


def test_each_package_imports_only_the_ones_below_it():
    def layer(module: str) -> int | None:
        part = module.split(".")[1] if "." in module else ""
        return LAYERS.index(part) if part in LAYERS else None

    upward = sorted(f"{name} -> {dep}" for name, deps in import_graph().items() for dep in deps
                    if layer(name) is not None and layer(dep) is not None and layer(dep) < layer(name))
    assert upward == []
