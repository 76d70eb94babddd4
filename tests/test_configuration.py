"""Config files: get_config(arg), typed overrides, unknown keys refused."""
import textwrap

import pytest

from sf2t_jax.configuration import ConfigKeyError, load_config, load_sweep, parse_arg


@pytest.fixture
def config_file(tmp_path):
    path = tmp_path / "exp.py"
    path.write_text(textwrap.dedent('''
        import ml_collections
        from sf2t_jax.configuration import parse_arg

        def get_config(arg=None):
            arg = parse_arg(arg, model="tiny", steps=10)
            c = ml_collections.ConfigDict()
            c.model = arg.model
            c.train = ml_collections.ConfigDict(dict(steps=arg.steps, lr=1e-4, remat=False, tasks=("count",)))
            return c

        def sweep():
            return [{"name": "a", "train.lr": 1e-3}, {"name": "b", "train.lr": 1e-2}]
    '''))
    return str(path)


def test_arg_and_overrides_are_typed(config_file):
    c = load_config(config_file + ":model=big,steps=7", ["train.lr=3e-4", "train.remat=true", "train.tasks=('a','b')"])
    assert (c.model, c.train.steps, c.train.lr, c.train.remat, c.train.tasks) == ("big", 7, 3e-4, True, ("a", "b"))


def test_unknown_override_key_is_refused_with_the_known_ones(config_file):
    with pytest.raises(ConfigKeyError, match=r"'train.lrr' does not exist; known here: lr, remat, steps, tasks"):
        load_config(config_file, ["train.lrr=1"])


def test_unknown_arg_and_bad_values_are_refused(config_file):
    with pytest.raises(ConfigKeyError, match="'modle' is not known"):
        load_config(config_file + ":modle=x")
    with pytest.raises(ValueError, match="'train.steps': cannot parse 'ten' as int"):
        load_config(config_file, ["train.steps=ten"])
    with pytest.raises(FileNotFoundError):
        load_config("nope/missing.py")


def test_sweep_lists_variants(config_file):
    assert [v["name"] for v in load_sweep(config_file)] == ["a", "b"]


def test_parse_arg_defaults():
    assert parse_arg(None, a=1).a == 1
