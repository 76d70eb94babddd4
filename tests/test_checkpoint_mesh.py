"""A checkpoint written on one mesh restores on others with equal values, and the data
iterator resumes at the next batch; frozen parameters may be left out of checkpoints."""
import dataclasses

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
from flax import nnx

from sf2t_jax.configuration import load_config
from sf2t_jax.experiment import from_config
from sf2t_jax.parallel.mesh import make_mesh
from sf2t_jax.parallel.sharding import named_rules
from sf2t_jax.train import checkpoint as checkpoint_lib
from sf2t_jax.train import data as data_lib
from sf2t_jax.train import model as model_lib
from sf2t_jax.train import optimizer as optimizer_lib
from sf2t_jax.train import state as state_lib

RULES = named_rules("default")


@pytest.fixture(scope="module")
def config():
    return from_config(load_config("configs/sf2t.py:frames=4", ["input.max_length=64"]))


def _setup(config, mesh, parts=None):
    shape = model_lib.model_config(config)
    parts = model_lib.split_model(config, shape, mesh, RULES) if parts is None else parts.on_mesh(mesh, RULES)
    tx, _ = optimizer_lib.make_optimizer(dataclasses.replace(config.train, steps=10))
    return shape, parts, tx, state_lib.train_state_shardings(parts, tx, mesh)


def _leaves(tree):
    return [np.asarray(x) for x in jax.tree.leaves(tree)]


def test_checkpoint_from_2x4_restores_on_1x8_and_one_device(config, tmp_path):
    mesh = make_mesh(fsdp=2, tensor=4)
    shape, parts, tx, shardings = _setup(config, mesh)
    _, *states = nnx.split(parts.build(), *parts.filters)
    values = {n: jax.device_put(nnx.to_pure_dict(s), parts.shardings[n])
              for n, s in zip(("trainable", "frozen", "extra"), states)}
    state = state_lib.create(values["trainable"], values["frozen"], tx, 7, shardings)
    # Non-trivial optimizer state: moments that are not all zero.
    state = state.replace(opt_state=jax.jit(lambda t: jax.tree.map(lambda x: x + 0.5 if x.dtype == np.float32 else x, t))(
        state.opt_state))
    batches = data_lib.open_batches(config, shape, mesh, RULES)
    next(batches), next(batches)
    expected_next = {k: np.asarray(v) for k, v in next(batches.host).items()}  # batch 3
    batches = data_lib.open_batches(config, shape, mesh, RULES)
    next(batches), next(batches)
    ckpt = checkpoint_lib.Checkpointer(str(tmp_path), config.checkpoint)
    ckpt.save(2, state, batches, config.recorded_config())
    ckpt.close()

    for target_mesh in (make_mesh(fsdp=8), make_mesh(fsdp=1, devices=jax.devices()[:1])):
        _, parts_t, tx_t, shardings_t = _setup(config, target_mesh, parts)
        target = state_lib.with_shardings(state_lib.abstract_state(parts_t, tx_t), shardings_t)
        fresh = data_lib.open_batches(config, shape, target_mesh, RULES)
        restored = checkpoint_lib.Checkpointer(str(tmp_path), config.checkpoint).restore(2, target, fresh)
        for got, want in zip(_leaves(restored), _leaves(state)):
            np.testing.assert_array_equal(got, want)
        for got, want in zip(jax.tree.leaves(restored), jax.tree.leaves(shardings_t)):
            assert got.sharding.is_equivalent_to(want, got.ndim)
        for key, value in next(fresh.host).items():
            np.testing.assert_array_equal(value, expected_next[key], err_msg=key)

    # checkpoint.save_frozen=false: frozen parameters stay out; restore passes the given ones through.
    lean = dataclasses.replace(config.checkpoint, save_frozen=False)
    ckpt = checkpoint_lib.Checkpointer(str(tmp_path / "lean"), lean)
    ckpt.save(2, state, batches, config.recorded_config())
    ckpt.close()
    with ocp.StandardCheckpointer() as reader:
        saved = reader.metadata(str(tmp_path / "lean" / "checkpoints" / "2" / "state")).item_metadata.tree
    assert "frozen" not in saved and "params" in saved
    target = state_lib.with_shardings(state_lib.abstract_state(parts, tx), shardings).replace(frozen=state.frozen)
    restored = checkpoint_lib.Checkpointer(str(tmp_path / "lean"), lean).restore(2, target, batches)
    assert restored.frozen is state.frozen
    for got, want in zip(_leaves(restored.params), _leaves(state.params)):
        np.testing.assert_array_equal(got, want)
