"""The batch contract (sf2t_jax/batch.py): its table, every producer's batches against it (the
input pipeline, the synthetic source), the planner's abstract batch, and host rows -> global arrays."""
import jax
import numpy as np
import pytest
from jax.sharding import Mesh, PartitionSpec

from sf2t_jax.batch import (
    BATCH_KEYS,
    FIELDS,
    META_KEYS,
    BatchContractError,
    BatchShape,
    batch_axes,
    batch_shardings,
    to_global,
)
from sf2t_jax.configuration import load_config
from sf2t_jax.experiment import from_config
from sf2t_jax.input import InputConfig, InputPipeline
from sf2t_jax.input.fixture_clips import write_clips
from sf2t_jax.models.vision import batch_vision
from sf2t_jax.parallel.mesh import make_mesh, select_devices
from sf2t_jax.parallel.rules import DEFAULT_RULES, REPLICATED_RULES
from sf2t_jax.plan import aot
from sf2t_jax.train import data as data_lib
from sf2t_jax.train import setup as setup_lib
from sf2t_jax.text import Tokenizer, build_tiny_tokenizer

# The tiny model on 4 frames (2 slices of 4x4 patches) in 64 tokens (as tests/test_plan_aot.py).
CONFIG = "configs/sf2t.py:frames=4"
OVERRIDES = ["input.max_length=64", "checkpoint.every=1000"]


def _contract(shape: BatchShape) -> dict:
    return {k: (s, FIELDS[k].dtype) for k, s in shape.shapes().items()}


def _described(batch) -> dict:
    return {k: (tuple(v.shape), np.dtype(v.dtype)) for k, v in batch.items()}


def test_the_contract_table():
    i32, f32 = np.dtype(np.int32), np.dtype(np.float32)
    shape = BatchShape(batch_size=6, length=32, slices=3, grid_hw=(4, 2), patch_dim=588, tokens_per_slice=5)
    assert _contract(shape) == {
        "input_ids": ((6, 32), i32), "attention_mask": ((6, 32), i32), "position_ids": ((3, 6, 32), i32),
        "loss_mask": ((6, 32), i32), "vision_patches": ((6, 3, 8, 588), f32), "vision_index": ((6, 15), i32),
        "task_id": ((6,), i32), "valid": ((6,), i32)}
    # T defaults to S/4 (Qwen-VL's 2x2 merge) and D to Qwen-VL's 1176.
    qwen = BatchShape(batch_size=2, length=16, slices=2, grid_hw=(4, 6))
    assert qwen.shapes()["vision_index"] == (2, 12) and qwen.shapes()["vision_patches"] == (2, 2, 24, 1176)
    assert {k: f.axes for k, f in FIELDS.items()} == {
        "input_ids": ("batch", "length"), "attention_mask": ("batch", "length"),
        "position_ids": (None, "batch", "length"), "loss_mask": ("batch", "length"),
        "vision_patches": ("batch", None, None, None), "vision_index": ("batch", None), "task_id": ("batch",),
        "valid": ("batch",)}
    assert {k: f.batch_dim for k, f in FIELDS.items()} == {k: 1 if k == "position_ids" else 0 for k in BATCH_KEYS}
    assert shape.per_process(3).shapes()["position_ids"] == (3, 2, 32)
    with pytest.raises(BatchContractError, match=r"input.batch_size=6 does not split over 4 processes"):
        shape.per_process(4)


def test_the_input_pipeline_makes_batches_of_the_contract(tmp_path):
    write_clips(tmp_path, 5, num_frames=16, height=64, width=64)
    config = InputConfig(source=str(tmp_path), tokenizer="tiny", batch_size=2, max_length=256, resolution=(56, 56),
                         seed=1, num_epochs=1)
    pipeline = InputPipeline(config, tokenizer=Tokenizer(build_tiny_tokenizer(1000), source="tiny"),
                             process_index=0, process_count=1)
    g = config.geometry
    want = _contract(BatchShape(batch_size=2, length=256, slices=g.slices, grid_hw=(4, 4)))
    it = pipeline.iterator()
    batches = list(it)
    assert len(batches) == 3  # 5 samples: the last batch has a padding row
    for batch in batches:
        assert tuple(batch) == BATCH_KEYS and _described(batch) == want
    assert tuple(it.last_meta) == META_KEYS
    assert all(v.shape == (2,) and v.dtype == np.int64 for v in it.last_meta.values())
    pipeline.spec.batch_shape(global_shapes=False).check(batches[-1])


def test_synthetic_batches_follow_the_contract_and_become_its_global_arrays():
    config = from_config(load_config(CONFIG, OVERRIDES))
    model = setup_lib.build_model(config, select_devices(0))
    batches = data_lib.open_batches(config, model.shape, model.mesh, model.rules)
    want = _contract(BatchShape(batch_size=8, length=64, slices=2, grid_hw=(4, 4)))  # 4 frames, 56 x 56
    host = next(batches.host)
    assert tuple(host) == BATCH_KEYS and _described(host) == want
    placed = next(batches)
    assert tuple(placed) == BATCH_KEYS and _described(placed) == want
    assert {k: v.sharding for k, v in placed.items()} == batch_shardings(batches.geometry, model.mesh, model.rules)


def test_the_planners_abstract_batch_is_the_trainers_batch():
    config = from_config(load_config(CONFIG, OVERRIDES))
    plan = aot.build_step(config, select_devices(0))
    abstract = plan.args[2]
    model = setup_lib.build_model(config, select_devices(0))
    real = next(data_lib.open_batches(config, model.shape, model.mesh, model.rules))
    assert tuple(abstract) == BATCH_KEYS
    assert ({k: (a.shape, a.dtype, a.sharding) for k, a in abstract.items()}
            == {k: (x.shape, x.dtype, x.sharding) for k, x in real.items()})
    assert {k: (a.shape, a.dtype) for k, a in abstract.items()} == _contract(plan.geometry)


def _host_rows(shape: BatchShape) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {k: rng.integers(0, 100, s).astype(FIELDS[k].dtype) for k, s in shape.shapes().items()}


def test_host_rows_become_global_arrays_sharded_by_the_rules():
    mesh = make_mesh(data=2, fsdp=4)
    shape = BatchShape(batch_size=8, length=6, slices=2, grid_hw=(2, 2), patch_dim=12)
    shardings = batch_shardings(shape, mesh, DEFAULT_RULES)
    assert shardings["input_ids"].spec == PartitionSpec(("data", "fsdp"), None)
    assert shardings["position_ids"].spec == PartitionSpec(None, ("data", "fsdp"), None)
    host = _host_rows(shape)
    placed = to_global({**host, "sample_index": np.arange(8)}, shape, shardings)  # host-only keys stay behind
    assert tuple(placed) == BATCH_KEYS
    for k, x in placed.items():
        assert x.sharding == shardings[k] and x.dtype == FIELDS[k].dtype
        np.testing.assert_array_equal(np.asarray(x), host[k])
    again = to_global(placed, shape, shardings)  # global arrays already: kept as they are
    assert all(again[k] is placed[k] for k in BATCH_KEYS)


@pytest.mark.parametrize("broken, message", [
    (lambda b: b.pop("valid"), r"lacks \['valid'\]"),
    (lambda b: b.update(input_ids=b["input_ids"].astype(np.int64)), r"\['input_ids'\]: expected .* int32, got .* int64"),
    (lambda b: b.update(vision_index=b["vision_index"][:, :1]), r"\['vision_index'\]: expected \('B', 'P\*T'\)"),
])
def test_a_batch_off_the_contract_is_refused_naming_the_field(broken, message):
    mesh = make_mesh(data=2, fsdp=4)
    shape = BatchShape(batch_size=8, length=6, slices=2, grid_hw=(2, 2), patch_dim=12)
    host = _host_rows(shape)
    broken(host)
    with pytest.raises(BatchContractError, match=message):
        to_global(host, shape, batch_shardings(shape, mesh, DEFAULT_RULES))
    with pytest.raises(BatchContractError, match=message):
        shape.check(host)


def test_a_batch_the_mesh_cannot_split_is_refused():
    shape = BatchShape(batch_size=6, length=6, slices=2, grid_hw=(2, 2))
    with pytest.raises(BatchContractError, match=r"input.batch_size=6 does not divide over the mesh's batch axes"):
        batch_shardings(shape, make_mesh(data=2, fsdp=4), DEFAULT_RULES)
    replicated = batch_shardings(shape, make_mesh(data=2, fsdp=4), REPLICATED_RULES)
    assert replicated["vision_patches"].spec == PartitionSpec(None, None, None, None)


def test_batch_axes_are_the_rules_batch_axes_present_in_the_mesh():
    mesh = make_mesh(data=2, fsdp=4)
    assert batch_axes(mesh, DEFAULT_RULES) == ("data", "fsdp")
    assert batch_axes(mesh, REPLICATED_RULES) == ()
    assert batch_axes(mesh, (("batch", "fsdp"),)) == ("fsdp",)
    only_fsdp = Mesh(np.array(jax.devices()), ("fsdp",))
    assert batch_axes(only_fsdp, DEFAULT_RULES) == ("fsdp",)


def test_batch_vision_puts_each_rows_slices_together():
    x = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5)
    (group,) = batch_vision(x, (2, 2))
    assert group.grid_hw == (2, 2) and group.patches.shape == (6, 4, 5)
    for b in range(2):
        for p in range(3):
            np.testing.assert_array_equal(group.patches[b * 3 + p], x[b, p])
