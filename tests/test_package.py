"""The package stands on its own: a regular (non-editable) install, run from another folder,
has its default sharding rules, experiment defaults, demo stages, dataset builders and data
files, and its command line; nothing in sf2t_jax/ reads the repository's configs/ folder; and
the configs/ files resolve to the package's defaults.

The install is built offline from a copy of the sources (pip writes build/ and *.egg-info next
to them) with the test environment's setuptools.
"""
import ast
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys

import pytest

from sf2t_jax.configuration import load_config, make_config
from sf2t_jax.defaults.demo import demo_config
from sf2t_jax.defaults.sf2t import sf2t_config
from sf2t_jax.parallel import rules

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "sf2t_jax"

# Run inside the installed copy: everything the library needs by default, printed as JSON.
PROBE = """
import json
import sf2t_jax
from sf2t_jax import validation
from sf2t_jax.configuration import make_config
from sf2t_jax.datasets.build import BUILDER_MODULES, builder_class
from sf2t_jax.defaults.demo import demo_config
from sf2t_jax.defaults.sf2t import sf2t_config
from sf2t_jax.demo.settings import DemoSettings
from sf2t_jax.parallel.sharding import named_rules
from sf2t_jax.ssv2 import ssv2_templates

train = make_config(sf2t_config, "model=qwen2vl_7b")
validation.check_train(train)
demo = DemoSettings.of(make_config(demo_config, None, ["data.dir=/data"]))
print(json.dumps({
    "package": sf2t_jax.__file__,
    "rules": {name: named_rules(name) for name in ("default", "replicated")},
    "train": train.to_dict(),
    "stage": demo.stage_config("sf2t", init_from="/runs/base/export").to_dict(),
    "builders": {name: builder_class(name).name for name in BUILDER_MODULES},
    "ssv2_templates": len(ssv2_templates()),
}, sort_keys=True))
"""


def _package_files(root: pathlib.Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts}


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """A folder holding a regular install of the package (what `pip install .` puts in site-packages)."""
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(PACKAGE, source / "sf2t_jax", ignore=shutil.ignore_patterns("__pycache__"))
    target = tmp_path_factory.mktemp("site")
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                           "--no-index", "--target", str(target), str(source)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return target


def _run(site, cwd, *args, timeout=120):
    """`python ARGS` with only the install on the path, from `cwd` (no repository in sight)."""
    env = {**os.environ, "PYTHONPATH": str(site), "JAX_PLATFORMS": "cpu"}
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_the_install_holds_every_file_of_the_package(site):
    assert _package_files(site / "sf2t_jax") == _package_files(PACKAGE)


def test_an_installed_package_finds_its_defaults_from_another_folder(site, tmp_path):
    proc = _run(site, tmp_path, "-c", PROBE)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout)
    assert pathlib.Path(got["package"]).parent == site / "sf2t_jax"  # not the repository's copy

    from sf2t_jax.datasets.build import BUILDER_MODULES
    from sf2t_jax.demo.settings import DemoSettings
    from sf2t_jax.ssv2 import ssv2_templates

    demo = DemoSettings.of(make_config(demo_config, None, ["data.dir=/data"]))
    expected = {
        "rules": {name: rules.RULES[name] for name in ("default", "replicated")},
        "train": make_config(sf2t_config, "model=qwen2vl_7b").to_dict(),
        "stage": demo.stage_config("sf2t", init_from="/runs/base/export").to_dict(),
        "builders": {name: name.partition("/")[0] for name in BUILDER_MODULES},
        "ssv2_templates": len(ssv2_templates()),
    }
    assert {k: v for k, v in got.items() if k != "package"} == json.loads(json.dumps(expected, sort_keys=True))


def test_an_installed_package_has_the_command_line(site, tmp_path):
    proc = _run(site, tmp_path, "-m", "sf2t_jax", "--help")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.startswith("usage: python -m sf2t_jax")
    for command in ("convert", "demo", "eval", "plan", "prepare", "preview", "sweep", "train"):
        assert command in proc.stdout
    # `demo` with no --config reads the package's demo defaults; a bad field is refused in one
    # line before anything is written.
    proc = _run(site, tmp_path, "-m", "sf2t_jax", "demo", "--workdir", "run", "--config.world.height=30")
    assert proc.returncode == 1
    assert proc.stderr == "error: world: WorldConfig.height=30: expected an even number >= 32\n"
    assert os.listdir(tmp_path) == []


# ----------------------------------------------------------------------------------------
# The experiment files in configs/ are the package's defaults.
# ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("arg", ["", "model=qwen2vl_7b,data=videos", "method=full,tasks=count+rearrange,frames=8",
                                 "model=qwen2vl_small,present=images,frames=4"])
def test_the_sf2t_config_file_is_the_package_default(arg):
    assert load_config(f"{ROOT}/configs/sf2t.py:{arg}").to_dict() == make_config(sf2t_config, arg or None).to_dict()


@pytest.mark.parametrize("arg", ["", "scale=medium", "scale=large,joint=True"])
def test_the_demo_config_file_is_the_package_default(arg):
    assert load_config(f"{ROOT}/configs/demo.py:{arg}").to_dict() == make_config(demo_config, arg or None).to_dict()


def test_the_sharding_file_re_exports_the_package_rules():
    from configs import sharding

    assert sharding.RULES is rules.RULES and sharding.DEFAULT_RULES is rules.DEFAULT_RULES


# ----------------------------------------------------------------------------------------
# Nothing in the package reads the repository's configs/ folder.
# ----------------------------------------------------------------------------------------
CONFIG_FILE = re.compile(r"configs/[\w/]*\.py")


def _repository_paths(source: str, name: str) -> list[str]:
    """Places in one module's `source` that reach outside the package: an import of `configs`, a
    path that climbs out of the package from `__file__` ('..' or `.parents`), or a string naming
    a configs/*.py file. Docstrings and argparse help (usage examples for users) may name them."""
    tree = ast.parse(source)
    prose = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) and isinstance(body[0].value,
                                                                                           ast.Constant):
            prose.add(id(body[0].value))
        if isinstance(node, ast.keyword) and node.arg == "help":
            prose.update(id(n) for n in ast.walk(node.value))
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "HELP" for t in node.targets):
            prose.update(id(n) for n in ast.walk(node.value))
    found = []
    for node in ast.walk(tree):
        where = f"{name}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.Import | ast.ImportFrom):
            modules = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            found += [f"{where}: imports {m}" for m in modules if m.split(".")[0] == "configs"]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in prose:
            if node.value == ".." or CONFIG_FILE.search(node.value):
                found.append(f"{where}: {node.value!r}")
        elif isinstance(node, ast.Attribute) and node.attr == "parents":
            found.append(f"{where}: .parents")
    return found


def test_the_package_reads_nothing_from_the_repository():
    found = [f for path in sorted(PACKAGE.rglob("*.py"))
             for f in _repository_paths(path.read_text(encoding="utf-8"), str(path.relative_to(ROOT)))]
    assert found == []


def test_the_layout_check_finds_the_ways_the_library_used_to_load_configs():
    source = ('"""Docstrings may say configs/sf2t.py."""\n'
              'import os\n'
              'import pathlib\n'
              'A = os.path.join(os.path.dirname(__file__), "..", "configs", "demo.py")\n'
              'B = pathlib.Path(__file__).resolve().parents[1] / "configs" / "sharding.py"\n'
              'from configs.sharding import RULES\n'
              'parser.add_argument("--config", help="e.g. configs/sf2t.py")\n'
              'root = "runs/demo"\n')
    assert sorted(_repository_paths(source, "m.py")) == [
        "m.py:4: '..'", "m.py:5: .parents", "m.py:6: imports configs.sharding"]
