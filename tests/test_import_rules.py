"""The package's import rules, read from the source with `ast` (nothing is imported).

The benchmark, the datasets and the input pipeline read any SSv2-format folder; the synthetic
world is one source of such folders, so none of them imports its code, not even through
another module. They share the SSv2 vocabulary (`sf2t_jax.ssv2`), which imports none of them.
(That nothing in the package reads the repository's configs/ folder is tests/test_package.py.)
"""
import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "sf2t_jax"

# package -> the packages that neither it nor anything it imports at module level may import
FORBIDDEN = {
    "sf2t_jax.finevidbench": ("sf2t_jax.world",),
    "sf2t_jax.datasets": ("sf2t_jax.world",),
    "sf2t_jax.input": ("sf2t_jax.world",),
    "sf2t_jax.ssv2": ("sf2t_jax.world", "sf2t_jax.finevidbench", "sf2t_jax.datasets", "sf2t_jax.input"),
}


def _module_names(package: pathlib.Path) -> dict[str, pathlib.Path]:
    """Every module of the package by dotted name ('sf2t_jax.ssv2' is its __init__.py)."""
    names = {}
    for path in package.rglob("*.py"):
        parts = path.relative_to(package.parent).with_suffix("").parts
        names[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return names


def _imports(source: str, module: str, is_package: bool, known: set[str]) -> list[tuple[int, str, bool]]:
    """(line, imported module, at module level) for each import in `source`.

    Relative imports are resolved; `from a import b` imports `a.b` when that is a module, else `a`.
    """
    tree = ast.parse(source)
    top_level = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".") if is_package else module.split(".")[:-1]
                anchor = anchor[:len(anchor) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        found += [(node.lineno, target, id(node) in top_level) for target in targets]
    return found


def _runs(target: str) -> list[str]:
    """What importing `target` executes: 'a.b.c' runs the packages 'a' and 'a.b', then 'a.b.c'."""
    parts = target.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts) + 1)]


def _inside(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def violations(modules: dict[str, str], forbidden: dict[str, tuple[str, ...]]) -> list[str]:
    """Every broken rule: 'module:line imports target' for an import written in the module (at
    any depth: functions too), and 'module reaches target: a -> b -> target' for the shortest
    chain of module-level imports through other modules of the package.

    Args:
      modules: dotted module name -> its source ('pkg' for pkg/__init__.py; a name that has
        submodules is taken as a package).
      forbidden: package -> the packages it may not import.
    """
    known = set(modules)
    packages = {m.rpartition(".")[0] for m in known}
    imports = {m: _imports(src, m, m in packages, known) for m, src in modules.items()}
    found = []
    for module in sorted(known):
        banned = [b for owner, bans in forbidden.items() if _inside(module, owner) for b in bans]
        if not banned:
            continue
        direct = [(line, target) for line, target, _ in imports[module] if any(_inside(target, b) for b in banned)]
        found += [f"{module}:{line} imports {target}" for line, target in direct]
        chains, queue = {module: [module]}, [module]  # breadth first: shortest chains
        for current in queue:
            for _, target, top in imports.get(current, []):
                for ran in _runs(target):
                    if top and ran in known and ran not in chains:
                        chains[ran] = chains[current] + [ran]
                        queue.append(ran)
        reached = [chain for target, chain in chains.items()
                   if len(chain) > 2 and any(_inside(target, b) for b in banned)]
        if reached and not direct:
            chain = min(reached, key=lambda c: (len(c), c))
            found.append(f"{module} reaches {chain[-1]}: {' -> '.join(chain)}")
    return list(dict.fromkeys(found))  # `from a import b, c` is one import of a


def test_the_package_keeps_its_import_rules():
    modules = {name: path.read_text(encoding="utf-8") for name, path in _module_names(PACKAGE).items()}
    for owner in FORBIDDEN:
        assert owner in modules, f"{owner} is no package of sf2t_jax: update FORBIDDEN"
    assert violations(modules, FORBIDDEN) == []


# A small package to show what the check finds (the real one has no violations to show).
TOY = {
    "p": "",
    "p.world": "",
    "p.world.io": "import json\n",
    "p.tools": "import os\nimport p.world.io\n",
    "p.clean": "import os\n",
    "p.bench": "",
    "p.bench.schema": "import json\n\nfrom p.world.io import dump\n",  # written in the module
    "p.bench.scene": "def f():\n    from ..world import io\n",  # relative, inside a function
    "p.bench.build": "from p.bench import helpers\n",  # through other modules
    "p.bench.helpers": "from p import tools\n",
    "p.bench.fine": "import json\nfrom p import clean\nfrom . import schema as s  # noqa\n",
}


def test_the_check_finds_each_kind_of_violation():
    assert violations(TOY, {"p.bench": ("p.world",)}) == [
        "p.bench.build reaches p.world: p.bench.build -> p.bench.helpers -> p.tools -> p.world",
        "p.bench.fine reaches p.world: p.bench.fine -> p.bench.schema -> p.world",
        "p.bench.helpers reaches p.world: p.bench.helpers -> p.tools -> p.world",
        "p.bench.scene:2 imports p.world.io",
        "p.bench.schema:3 imports p.world.io",
    ]
    assert violations(TOY, {"p.bench": ("p.other",), "p.clean": ("p.world",)}) == []
