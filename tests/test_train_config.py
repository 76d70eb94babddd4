"""Settings that cannot work are refused at start-up, before any compilation, naming the field."""
import json

import pytest

import launch
from sf2t_jax.configuration import ConfigKeyError, load_config
from sf2t_jax.models.config import qwen2vl_tiny
from sf2t_jax.train import setup as setup_lib
from sf2t_jax.train.errors import TrainConfigError
from sf2t_jax.train.loop import train

SMALL = ["input.max_length=64"]


def _train(tmp_path, *overrides, arg="frames=4"):
    return train(load_config(f"configs/sf2t.py:{arg}", [*SMALL, *overrides]), str(tmp_path))


@pytest.mark.parametrize("overrides, message", [
    (["mesh.ici=(3,1,1)"], r"mesh.ici=\(3, 1, 1\) needs 3 devices, but 8 are available"),
    (["mesh.rules=fast"], r"mesh.rules='fast': expected one of \['default', 'replicated'\]"),
    ([r"lora.targets=^model\.layers\.\d+\.attn$"], r"lora.targets: LoRA targets .* match no linear layer"),
    ([r"params.frozen=(r'^visual\.blockz\.',)"], r"params.frozen\[0\]=\^visual\\.blockz\\. matches no parameter"),
    (["params.frozen=('.',)", "params.extra_trainable=()"], "nothing to train"),
    (["input.batch_size=6"], r"input.batch_size=6 does not divide over the mesh's batch axes"),
    (["train.grad_accum=3"], r"input.batch_size=8 must be divisible by train.grad_accum \(3\) x the mesh's batch "
                             r"shards \(data x fsdp = 8\), i.e. by 24"),
    (["model.dtype=float8"], r"model.dtype='float8': expected one of"),
    (["model.remat=some"], r"model.remat='some': expected one of"),
    (["input.resolution=(50,56)"], r"input.resolution: resolution bucket \(50, 56\) must be positive multiples of 28"),
    (["input.max_length=16"], r"input.max_length=16 cannot hold a sample"),
    (["checkpoint.keep=0"], r"checkpoint.keep=0: expected an integer >= 1"),
    (["train.steps=0", "input.num_epochs=0"], r"train.steps=0 means 'input.num_epochs passes'"),
])
def test_bad_settings_are_refused_naming_the_field(tmp_path, overrides, message):
    with pytest.raises(TrainConfigError, match=message):
        _train(tmp_path, *overrides)
    assert not (tmp_path / "checkpoints").exists()


def test_unknown_keys_and_arguments_are_refused():
    with pytest.raises(ConfigKeyError, match=r"'train.lrr' does not exist; known here: b1, b2"):
        load_config("configs/sf2t.py", ["train.lrr=1"])
    with pytest.raises(ConfigKeyError, match=r"config arg 'modle' is not known"):
        load_config("configs/sf2t.py:modle=qwen2vl_7b")
    with pytest.raises(ValueError, match=r"model='qwen2vl_9b', expected one of"):
        load_config("configs/sf2t.py:model=qwen2vl_9b")
    with pytest.raises(ValueError, match=r"tasks='count\+recount': unknown \['recount'\]"):
        load_config("configs/sf2t.py:tasks=count+recount")


def test_init_from_must_be_a_converted_checkpoint_of_the_configured_shape(tmp_path):
    with pytest.raises(FileNotFoundError, match="init_from=.*: no config.json"):
        _train(tmp_path / "run", f"init_from={tmp_path}")
    # A converted checkpoint of another shape (the check reads only its config.json).
    (tmp_path / "ckpt" / "params").mkdir(parents=True)
    (tmp_path / "ckpt" / "config.json").write_text(json.dumps(qwen2vl_tiny(vocab_size=512).to_hf_dict()))
    with pytest.raises(TrainConfigError, match=r"model.name='qwen2vl_tiny' does not match init_from=.*vocab_size 1000 "
                                               r"\(preset\) != 512 \(checkpoint\)"):
        _train(tmp_path / "run", f"init_from={tmp_path / 'ckpt'}")


def test_the_command_line_prints_a_config_that_cannot_work_in_one_line(tmp_path):
    with pytest.raises(SystemExit) as e:
        launch.main(["train", "--config", "configs/sf2t.py:frames=4", "--workdir", str(tmp_path),
                     "--config.input.max_length=64", "--config.input.batch_size=6"])
    assert str(e.value.code).startswith("error: input.batch_size=6 does not divide over the mesh's batch axes")
    assert "\n" not in str(e.value.code) and not (tmp_path / "checkpoints").exists()


@pytest.mark.parametrize("bug", [ValueError("planted: a typo in the step"), KeyError("planted: a missing key")],
                         ids=["ValueError", "KeyError"])
def test_a_bug_in_the_set_up_is_not_reported_as_a_config_error(tmp_path, monkeypatch, bug):
    """Only InputErrors are refusals of bad input; a ValueError or KeyError from a bug in the
    build keeps its type and traceback, in `train` and on the command line."""
    def broken(*args, **kwargs):
        raise bug

    monkeypatch.setattr(setup_lib, "build_step", broken)
    with pytest.raises(type(bug)) as e:
        _train(tmp_path)
    assert e.value is bug
    with pytest.raises(type(bug)) as e:
        launch.main(["train", "--config", "configs/sf2t.py:frames=4", "--workdir", str(tmp_path / "cli"),
                     *(f"--config.{o}" for o in SMALL)])
    assert e.value is bug
