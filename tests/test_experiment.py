"""The training config is converted once (sf2t_jax/experiment.py) into typed settings; nothing
below the command line reads a ConfigDict."""
import ast
import dataclasses
import os

import pytest

from sf2t_jax import cli
from sf2t_jax.cli import train as cli_train
from sf2t_jax.configuration import ConfigKeyError, ConfigValueError, load_config
from sf2t_jax.experiment import Experiment, TrainSettings, from_config
from sf2t_jax.input.config import InputConfig

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(ROOT, "sf2t_jax")

# Where a ConfigDict may be read: the loading and checking of config files, the conversion, the
# command line, and the package's default experiment files.
# eval/config.py is the eval section's conversion (`EvalSettings.of`), demo/settings.py the demo
# config's (`DemoSettings.of`, which also builds each stage's training config).
CONVERSION = ("configuration.py", "experiment.py", "validation.py", "cli/", "defaults/", "eval/config.py",
              "demo/settings.py")
CONFIGDICT_METHODS = {"to_dict", "unlocked", "lock", "copy_and_resolve_references", "get_ref"}


def _configdict_uses(path: str) -> list[str]:
    """Lines of `path` that import ml_collections, name ConfigDict, or call a ConfigDict-only method."""
    tree = ast.parse(open(path).read(), path)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import) and any(a.name.split(".")[0] == "ml_collections" for a in node.names):
            found.append(f"{node.lineno}: import ml_collections")
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "ml_collections":
            found.append(f"{node.lineno}: from ml_collections import")
        elif isinstance(node, ast.Name) and node.id == "ConfigDict":
            found.append(f"{node.lineno}: ConfigDict")
        elif isinstance(node, ast.Attribute) and node.attr == "ConfigDict":
            found.append(f"{node.lineno}: .ConfigDict")
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and node.func.attr in CONFIGDICT_METHODS):
            found.append(f"{node.lineno}: .{node.func.attr}()")
    return found


def test_no_configdict_is_read_outside_the_conversion_and_the_command_line():
    offenders = {}
    for folder, _, files in os.walk(PACKAGE):
        for name in files:
            if not name.endswith(".py"):
                continue
            path = os.path.join(folder, name)
            rel = os.path.relpath(path, PACKAGE).replace(os.sep, "/")
            if rel.startswith(CONVERSION):
                continue
            uses = _configdict_uses(path)
            if uses:
                offenders[rel] = uses
    assert not offenders, f"ConfigDict read outside sf2t_jax/experiment.py and sf2t_jax/cli/: {offenders}"


def test_the_walk_sees_a_configdict_where_there_is_one(tmp_path):
    """The rule above can fail: each kind of use is found."""
    path = tmp_path / "m.py"
    path.write_text("import ml_collections\nfrom ml_collections import ConfigDict\n"
                    "def f(c):\n    return c.train.to_dict(), ml_collections.ConfigDict(), ConfigDict()\n")
    assert sorted(u.split(": ")[1] for u in _configdict_uses(str(path))) == sorted(
        ["import ml_collections", "from ml_collections import", "ConfigDict", ".to_dict()", ".ConfigDict"])


def test_every_section_becomes_its_typed_settings():
    experiment = from_config(load_config("configs/sf2t.py:frames=4", ["train.lr=3e-4", "mesh.ici=(1,2,-1)"]))
    assert isinstance(experiment, Experiment) and isinstance(experiment.input, InputConfig)
    assert isinstance(experiment.train, TrainSettings) and experiment.train.lr == 3e-4
    assert experiment.mesh.ici == (1, 2, -1) and experiment.input.frame_budget == 4
    with pytest.raises(dataclasses.FrozenInstanceError):
        experiment.train.lr = 1.0
    # What config.json records is the config as given.
    assert experiment.recorded_config()["train"]["lr"] == 3e-4


def test_loss_positions_is_set_from_the_command_line(tmp_path):
    args = cli.parse(["train", "--config", "configs/sf2t.py:frames=4", "--workdir", str(tmp_path),
                      "--config.train.loss_positions=7"])
    assert cli_train.load(args).train.loss_positions == 7
    assert from_config(load_config("configs/sf2t.py")).train.loss_positions == 0  # the default: every position


def test_fields_are_checked_at_conversion_naming_them():
    with pytest.raises(ConfigValueError, match=r"train.steps=-1: expected an integer >= 0"):
        from_config(load_config("configs/sf2t.py", ["train.steps=-1"]))
    with pytest.raises(ConfigValueError, match=r"train.loss_positions=-1: expected an integer >= 0"):
        from_config(load_config("configs/sf2t.py", ["train.loss_positions=-1"]))


def test_unknown_and_missing_keys_are_refused_naming_them():
    config = load_config("configs/sf2t.py")
    with config.unlocked():
        config.log.colour = True
    with pytest.raises(ConfigKeyError, match=r"config key 'log.colour' is not a training setting"):
        from_config(config)
    config = load_config("configs/sf2t.py")
    with config.unlocked():
        del config.debug["batch_digest"]
    with pytest.raises(ConfigKeyError, match=r"config key 'debug.batch_digest' is missing"):
        from_config(config)
