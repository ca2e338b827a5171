"""The package's modules import each other without a cycle.

A cycle (issue 20: analysis -> speculative_sampler -> rounds -> analysis)
works only as long as every module happens to be imported in an order that
breaks it, and a lazy import inside a function hides it until that function
runs. This reads every `import` under `keras_specdec/` (top-level and inside
functions) and checks that the graph between the package's modules has no
cycle. Static: it imports nothing and costs no compile.
"""

import ast
import pathlib

import keras_specdec

PACKAGE = pathlib.Path(keras_specdec.__file__).parent


def _module_name(path):
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph():
    """`{module: {modules of this package it imports}}`."""
    files = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        edges = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.rsplit(".", node.level - 1)[0]
                    base = f"{anchor}.{base}" if base else anchor
                # `from pkg import module` imports the module.
                targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
            else:
                continue
            for target in targets:
                while target and target not in files:
                    target = target.rpartition(".")[0]
                # Every module imports its package's __init__ first; that
                # edge is not a cycle between modules.
                if target and target != name and not name.startswith(target + "."):
                    if files[target].name != "__init__.py":
                        edges.add(target)
        graph[name] = edges
    return graph


def find_cycle(graph):
    """A list of modules forming a cycle, or None."""
    state = {}

    def visit(node, path):
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state:
                cycle = visit(nxt, path + [nxt])
                if cycle:
                    return cycle
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node, [node])
            if cycle:
                return cycle
    return None


def test_find_cycle_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle_between_modules():
    graph = import_graph()
    assert "keras_specdec.rounds" in graph
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_rounds_uses_theory_not_measurement():
    # The round code's gamma schedules evaluate Theorem 3.8 in the loop.
    graph = import_graph()
    assert "keras_specdec.theory" in graph["keras_specdec.schedules"]
    for module in ("keras_specdec.rounds", "keras_specdec.schedules"):
        assert "keras_specdec.analysis" not in graph[module]
        assert "keras_specdec.measure" not in graph[module]
    # Pure theory imports nothing of the package.
    assert graph["keras_specdec.theory"] == set()
