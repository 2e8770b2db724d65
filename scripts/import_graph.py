"""The import graph of ICPT's packages, read with `ast` (nothing is imported): it prints which package imports
which, every import made inside a function, and fails on a cycle or an import against the layers.

    python scripts/import_graph.py              # this checkout
    python scripts/import_graph.py --root DIR   # another checkout (e.g. an older commit, for a before/after)

The layers, highest first: a package may import the ones below it, never one above, and no two modules may
import each other, directly or through others (imports inside functions count: they hide a cycle, not remove
it). docs/architecture.md explains them.
"""

import argparse
import ast
import sys
from collections import defaultdict
from pathlib import Path

PACKAGES = ("modeling_icpt", "processing_icpt", "icpt")
# rank of each unit (a subpackage of icpt, a top-level module of icpt, or a core package); higher imports lower
LAYERS = {
    "modeling_icpt": 0,
    "processing_icpt": 1,
    "icpt.episodes": 2,
    "icpt.metrics": 2,
    "icpt.cards": 2,
    "icpt.world": 3,
    "icpt.data": 4,
    "icpt.inference": 5,
    "icpt.training": 6,
    "icpt.evaluation": 7,
    "icpt.app": 8,
    "icpt.commands": 9,
    "icpt.__main__": 10,
}
# the package `__init__`s, which only hand names on
INIT_UNITS = {"icpt"}


def modules(root: Path) -> dict[str, Path]:
    """`{dotted module name: file}` of the packages under `root` (the shipped weights' folder has no code)."""
    found = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def imports(path: Path, name: str, known: set[str]) -> tuple[list[tuple[str, int, bool]], list[tuple[int, str]]]:
    """`(imported project module, line, inside a function)` for every import of a project module in the file --
    by an import statement, or by its name in a string (`importlib.import_module("icpt.x")` hides an import) --
    and `(line, module)` of every import statement inside a function, of any module."""
    tree = ast.parse(path.read_text(), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found, local = [], []

    def visit(node, in_function):
        for child in ast.iter_child_nodes(node):
            inside = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            targets = []
            if isinstance(child, ast.Import):
                targets = [alias.name for alias in child.names]
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    anchor = package.split(".")
                    anchor = anchor[: len(anchor) - child.level + 1]
                    base = ".".join(anchor + ([base] if base else []))
                # `from pkg import module` imports the module when it is one
                targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in child.names]
            if targets and in_function:
                local.append((child.lineno, targets[0]))
            if isinstance(child, ast.Constant) and isinstance(child.value, str) and "." in child.value and child.value in known:
                targets = [child.value]
            for target in targets:
                while target and target not in known:  # `import a.b.c` of a name inside a module
                    target = target.rpartition(".")[0]
                if target:
                    found.append((target, child.lineno, in_function))
            visit(child, inside)

    visit(tree, False)
    return found, local


def unit(module: str) -> str:
    """The layer unit of a module: the longest prefix named in `LAYERS` (else its top two name parts)."""
    parts = module.split(".")
    for end in range(len(parts), 0, -1):
        if ".".join(parts[:end]) in LAYERS:
            return ".".join(parts[:end])
    return ".".join(parts[:2])


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def strongconnect(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in sorted(edges.get(node, ())):
            if other not in index:
                strongconnect(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for node in sorted(edges):
        if node not in index:
            strongconnect(node)
    return found


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[1], help="the checkout to read")
    args = parser.parse_args(argv)
    found = modules(args.root)
    edges, unit_edges, in_function, problems = defaultdict(set), defaultdict(int), [], []
    for name, path in found.items():
        project, inside = imports(path, name, set(found))
        in_function += [f"{path.relative_to(args.root)}:{line} imports {target}" for line, target in inside]
        for target, line, _ in sorted(set(project)):  # one edge per statement and module imported
            if target == name or name.startswith(target + "."):  # a package's own __init__ on the way down
                continue
            edges[name].add(target)
            source_unit, target_unit = unit(name), unit(target)
            where = f"{path.relative_to(args.root)}:{line}"
            if source_unit != target_unit:
                unit_edges[source_unit, target_unit] += 1
                if source_unit in LAYERS and target_unit in LAYERS and LAYERS[target_unit] >= LAYERS[source_unit]:
                    problems.append(f"upward import: {where} ({source_unit}) imports {target} ({target_unit})")
    for name in found:
        if unit(name) not in LAYERS and unit(name) not in INIT_UNITS:
            problems.append(f"no layer: {name} (add its package to LAYERS in scripts/import_graph.py)")
    for component in cycles(edges):
        problems.append("cycle: " + " <-> ".join(component))

    print(f"{len(found)} modules; package imports (importer -> imported: number of import statements):")
    for source in sorted({s for s, _ in unit_edges}, key=lambda u: (-LAYERS.get(u, 99), u)):
        targets = sorted(((t, n) for (s, t), n in unit_edges.items() if s == source), key=lambda x: (-LAYERS.get(x[0], 99), x[0]))
        print(f"  {source} -> " + ", ".join(f"{t} ({n})" for t, n in targets))
    print(f"imports inside functions: {len(in_function)}")
    for entry in in_function:
        print(f"  {entry}")
    for problem in problems:
        print(problem)
    print("OK: no cycle, no upward import" if not problems else f"{len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
