"""The LM head at answer positions only (`train.loss_positions`): the same loss, gradients and
metrics as the head over every position, and a budget too small for a batch is refused."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from sf2t_jax import validation
from sf2t_jax.configuration import load_config
from sf2t_jax.experiment import from_config
from sf2t_jax.parallel.mesh import make_mesh
from sf2t_jax.parallel.sharding import named_rules
from sf2t_jax.train import data as data_lib
from sf2t_jax.train import model as model_lib
from sf2t_jax.train.loss import gather_targets, target_positions
from sf2t_jax.train.step import make_grad_fn, make_loss_sums
from tolerances import assert_reordered_close

RULES = named_rules("default")


def test_target_positions_keep_targets_in_order_and_never_repeat_a_position():
    w = jnp.array([[0, 1, 0, 1, 1, 0], [0, 0, 0, 0, 0, 1], [0, 0, 0, 0, 0, 0]], jnp.float32)
    idx = np.asarray(target_positions(w, 4))
    np.testing.assert_array_equal(idx[0, :3], [1, 3, 4])
    assert idx[1, 0] == 5
    for row, ids in zip(np.asarray(w), idx):  # padding positions are non-targets, all distinct
        assert len(set(ids)) == 4 and row[ids].sum() == row.sum()
    hidden = jnp.arange(3 * 6 * 2, dtype=jnp.float32).reshape(3, 6, 2)
    h, t, kept, dropped = gather_targets(hidden, jnp.arange(18).reshape(3, 6), w, 2)
    np.testing.assert_array_equal(h[0], hidden[0, jnp.array([1, 3])])
    np.testing.assert_array_equal(t[0], [1, 3])
    assert float(kept.sum()) == 3 and float(dropped) == 1  # row 0 has 3 targets, 2 kept
    with pytest.raises(ValueError, match="loss_positions=7"):
        target_positions(w, 7)


def _setup(*overrides):
    config = from_config(load_config("configs/sf2t.py:frames=4", ["input.max_length=64", "model.dtype=float32",
                                                                  "model.precision=highest", *overrides]))
    shape = model_lib.model_config(config)
    mesh = make_mesh(fsdp=1, devices=jax.devices()[:1])
    parts = model_lib.split_model(config, shape, mesh, RULES)
    values = model_lib.initial_values(parts, config, mesh, RULES)
    # LoRA B = 0 at init: give it values, so the adapters' gradients are not trivially related.
    values["trainable"] = jax.tree.map(lambda x: x + 0.01 * jax.random.normal(jax.random.key(x.size), x.shape),
                                       values["trainable"])
    batches = data_lib.open_batches(config, shape, mesh, RULES)
    batch = {k: np.array(v) for k, v in next(batches.host).items()}
    for row in range(batch["loss_mask"].shape[0]):  # 2..5 targets per row, and one padding row
        start = int(np.argmax(batch["loss_mask"][row]))
        batch["loss_mask"][row, max(start - row % 4, 0):start] = 1
    batch["valid"][2] = 0
    return config, parts, values, batch, batches.geometry


@pytest.mark.parametrize("method", ["lora", "full"])
def test_answer_positions_only_equal_the_full_logits_loss_and_gradients(method):
    config, parts, values, batch, geometry = _setup(f"method={method}")
    counts = batch["loss_mask"][:, 1:].sum(axis=1) * batch["valid"]
    k = int(counts.max())
    assert k >= 5 and len(set(counts)) > 2
    results = {}
    for positions in (0, k, geometry.length - 1):
        fn = make_grad_fn(make_loss_sums(parts, geometry.grid_hw, geometry.num_tasks, dropout=False,
                                         loss_positions=positions), 1)
        results[positions] = jax.device_get(jax.jit(fn)(values["trainable"], values["frozen"], values["extra"],
                                                        jax.random.PRNGKey(0), batch))
    grads0, sums0 = results[0]
    assert float(sums0["count"]) == counts.sum() and float(sums0["dropped"]) == 0
    for positions in (k, geometry.length - 1):
        grads, sums = results[positions]
        assert float(sums["dropped"]) == 0
        for key in ("correct", "count", "task_correct", "task_count"):  # counts of 0/1 weights: exact
            np.testing.assert_array_equal(sums[key], sums0[key], err_msg=key)
        # The head runs on other rows and the sums run over K instead of L - 1 positions: the
        # same terms in another order, through the vocabulary's logsumexp (tolerances.py).
        terms = max(model_lib.model_config(config).text.vocab_size, batch["input_ids"].size)
        assert_reordered_close(sums["loss_sum"], sums0["loss_sum"], terms, err_msg="loss_sum")
        flat0 = traverse_util.flatten_dict(grads0)
        for path, g in traverse_util.flatten_dict(grads).items():
            assert_reordered_close(g, flat0[path], terms, err_msg=".".join(map(str, path)))


def test_a_budget_smaller_than_a_row_is_loud():
    config, parts, values, batch, geometry = _setup()
    counts = batch["loss_mask"][:, 1:].sum(axis=1) * batch["valid"]
    small = int(counts.max()) - 1
    fn = make_grad_fn(make_loss_sums(parts, geometry.grid_hw, geometry.num_tasks, dropout=False,
                                     loss_positions=small), 1)
    _, sums = jax.jit(fn)(values["trainable"], values["frozen"], values["extra"], jax.random.PRNGKey(0), batch)
    assert float(sums["dropped"]) > 0 and np.isnan(float(sums["loss_sum"]))
    # The trainer refuses such a batch on the host, before the step, naming the setting.
    with pytest.raises(ValueError, match=rf"train.loss_positions={small}: row \d+ .* has {small + 1} target tokens"):
        data_lib.check_targets(batch, small)
    data_lib.check_targets(batch, small + 1)
    config = load_config("configs/sf2t.py:frames=4", ["input.max_length=64"])
    with config.unlocked():
        config.train.loss_positions = -1
    with pytest.raises(ValueError, match="train.loss_positions=-1"):
        validation.check_train(config)


@pytest.mark.parametrize("positions", [0, 8])
def test_blockwise_head_equals_the_whole_head(positions):
    """`train.loss_chunk`: the head and loss over blocks of positions (7 does not divide L - 1 =
    63: the last block is padded) give the same sums and gradients as the head at once."""
    config, parts, values, batch, geometry = _setup("method=lora")
    results = {}
    for chunk in (0, 7, 32):
        fn = make_grad_fn(make_loss_sums(parts, geometry.grid_hw, geometry.num_tasks, dropout=False,
                                         loss_positions=positions, loss_chunk=chunk), 1)
        results[chunk] = jax.device_get(jax.jit(fn)(values["trainable"], values["frozen"], values["extra"],
                                                    jax.random.PRNGKey(0), batch))
    grads0, sums0 = results[0]
    terms = max(model_lib.model_config(config).text.vocab_size, batch["input_ids"].size)
    for chunk in (7, 32):
        grads, sums = results[chunk]
        for key in ("correct", "count", "task_correct", "task_count", "dropped"):
            np.testing.assert_array_equal(sums[key], sums0[key], err_msg=key)
        # The same token losses, summed block by block (tolerances.py).
        assert_reordered_close(sums["loss_sum"], sums0["loss_sum"], terms, err_msg="loss_sum")
        flat0 = traverse_util.flatten_dict(grads0)
        for path, g in traverse_util.flatten_dict(grads).items():
            assert_reordered_close(g, flat0[path], terms, err_msg=".".join(map(str, path)))
