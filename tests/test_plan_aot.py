"""`launch.py plan`: the planner's memory figure is the memory analysis of the real train step.

The planner lowers the train step from abstract, sharded arguments; here the same step is also
built the way the trainer builds it (real initial values, a real batch from the data source)
and compiled normally on the same CPU devices: the two memory analyses must agree exactly.
"""
import json
import os

import jax
import pytest

import launch
from sf2t_jax.configuration import load_config
from sf2t_jax.experiment import from_config
from sf2t_jax.errors import InputError
from sf2t_jax.parallel.mesh import select_devices
from sf2t_jax.plan import aot, flops, report, topology
from sf2t_jax.train import data as data_lib
from sf2t_jax.train import setup as setup_lib
from sf2t_jax.train import model as model_lib
from sf2t_jax.train import state as state_lib

# The tiny model on 4 frames (2 slices of 4x4 patches) in 64 tokens: the real layout, small shapes.
CONFIG = "configs/sf2t.py:frames=4"
OVERRIDES = ["input.max_length=64", "checkpoint.every=1000"]


def _compile_as_the_trainer_does(config):
    """train/loop.py's set-up (train/setup.py) with real values and a real batch, compiled for the
    local devices."""
    model = setup_lib.build_model(config, select_devices(config.mesh.devices))
    batches = data_lib.open_batches(config, model.shape, model.mesh, model.rules)
    built = setup_lib.build_step(config, model, batches.geometry, data_lib.total_steps(config, batches.geometry))
    values = model_lib.initial_values(model.parts, config, model.mesh, model.rules)
    state = state_lib.create(values["trainable"], values["frozen"], built.tx, int(config.seed), built.state_shardings)
    return built.step.lower(state, values["extra"], next(batches)).compile(), batches.geometry, model.mesh


@pytest.mark.parametrize("options", [[], ["train.loss_positions=8", "train.loss_chunk=16"]])
def test_planner_memory_is_the_memory_analysis_of_the_train_step_compiled_on_cpu(tmp_path, capsys, options):
    out = tmp_path / "plan.json"
    overrides = OVERRIDES + options
    launch.main(["plan", "--config", CONFIG, "--topology", "cpu:8", *(f"--config.{o}" for o in overrides),
                 "--json", str(out)])
    printed = capsys.readouterr().out
    planned = json.loads(out.read_text())
    assert "memory per device" in printed and "analytic (plan/flops.py)" in printed

    compiled, geometry, mesh = _compile_as_the_trainer_does(from_config(load_config(CONFIG, overrides)))
    stats = compiled.memory_analysis()
    measured = {name: getattr(stats, field) for name, field in aot.MEMORY_FIELDS.items()}
    assert {k: planned["memory"][k] for k in measured} == measured
    assert planned["memory"]["total"] == (measured["argument"] + measured["output"] - measured["alias"]
                                          + measured["temp"] + measured["generated_code"])
    assert measured["alias"] > 0  # the state is donated
    assert planned["mesh"] == dict(mesh.shape) == {"data": 1, "fsdp": 8, "tensor": 1}
    b = planned["batch"]
    assert (b["rows"], b["length"], b["slices"], tuple(b["grid_hw"])) == (
        geometry.batch_size, geometry.length, geometry.slices, geometry.grid_hw)
    # The analytic count is plan/flops.py's for this method and batch (LoRA; ViT frozen, merger trained).
    want = flops.train_step_flops(model_lib.model_config(from_config(load_config(CONFIG, overrides))),
                                  flops.Workload(geometry.batch_size, geometry.length, geometry.slices,
                                                 geometry.patches), method="lora", lora_rank=16,
                                  train_vision=False, train_merger=True)
    assert planned["analytic_flops"] == pytest.approx(want)
    assert planned["fits"] is None and "step_seconds" not in planned  # no published peak for CPUs


def _plan_error(capsys, *args) -> str:
    with pytest.raises(SystemExit) as e:
        launch.main(["plan", "--config", CONFIG, *args])
    return str(e.value)


def test_unknown_topology_is_named_and_the_valid_ones_listed(capsys):
    for name in ("v9z:2x2", "v5e:2x2x2", "v5p:4x4", "cpu:x", "tpu"):
        message = _plan_error(capsys, "--topology", name)
        assert name in message
        for form in ("v5e:AxB", "v5p:AxBxC", "v4:AxBxC", "cpu:N"):
            assert form in message


def test_tpu_topology_without_libtpu_says_how_to_install_it(capsys, monkeypatch):
    monkeypatch.setattr(topology, "libtpu_available", lambda: False)
    message = _plan_error(capsys, "--topology", "v5e:2x2")
    assert "v5e:2x2" in message and "libtpu" in message and "pip install '.[plan]'" in message


def test_more_cpu_devices_than_the_process_has_is_refused():
    with pytest.raises(InputError, match="xla_force_host_platform_device_count=64"):
        topology.parse("cpu:64")


def test_a_batch_the_topology_cannot_split_is_an_input_error():
    config = load_config(CONFIG, [*OVERRIDES, "input.batch_size=6"])
    with pytest.raises(InputError, match="batch"):
        aot.build_step(config, topology.parse("cpu:8").devices)


def test_a_bug_in_the_build_is_not_reported_as_an_input_error(monkeypatch):
    bug = KeyError("planted: a typo in the model code")

    def broken(*args, **kwargs):
        raise bug

    monkeypatch.setattr(setup_lib, "build_model", broken)
    with pytest.raises(KeyError) as e:
        aot.build_step(load_config(CONFIG, OVERRIDES), jax.devices()[:4])
    assert e.value is bug  # not renamed: a bug keeps its type and traceback


def test_report_counts_a_refused_compile_as_not_fitting():
    experiment = from_config(load_config(CONFIG, OVERRIDES))
    plan = aot.build_step(experiment, jax.devices()[:4])
    message = ("RESOURCE_EXHAUSTED: Ran out of memory on HBM, the total memory required for HLO temporaries "
               "(20.50G) exceeds available HBM (15.75G).")
    result = aot.CompileResult(plan, None, {}, 1.0, oom=message, oom_bytes=aot._oom_bytes(message))
    topo = topology.Topology("v5e:2x2", "v5e", topology.CHIPS["v5e"], 1, tuple(jax.devices()[:4]))
    p = report.project(experiment, topo, result)
    assert p["fits"] is False and p["oom_bytes"] == int(20.5 * 2**30)
    assert "DOES NOT FIT" in report.format_text(p, topo)
    assert "**no**" in report.table_row(p) and "> 20.5 GiB" in report.table_row(p)


def test_tpu_step_runs_splash_attention_by_default():
    """model.attention=auto compiles splash attention into the TPU step (the decoder's 128-token
    rows; the 16-patch vision slices are below one tile: XLA): the forward kernel and both
    backward kernels; none into the CPU step; model.attention=xla none anywhere."""
    if not topology.libtpu_available():
        message = "libtpu is not installed: pip install -e '.[test,plan]'"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    config = load_config("configs/sf2t.py", ["checkpoint.every=1000"])
    kernels = aot.compile_step(config, topology.parse("v5e:2x2")).attention_kernels
    kinds = {name.split("_segmented")[0] for name in kernels}
    assert kinds == {"splash_mha_fwd", "splash_mha_dq", "splash_mha_dkv"}, kernels
    assert aot.compile_step(config, topology.parse("cpu:4")).attention_kernels == {}
    xla = load_config("configs/sf2t.py", ["checkpoint.every=1000", "model.attention=xla"])
    assert aot.compile_step(xla, topology.parse("v5e:2x2")).attention_kernels == {}


# Tiny-model figures differ between TPU and CPU by layout, not by what is stored: TPU pads
# arrays to its (8, 128) tiles (the tiny model is 64 wide) and fuses differently. At the
# default tiny config (16 frames, 128 tokens) we measured TPU/CPU = 1.35x for the arguments and
# 1.62x for the total without the program's code; at 4 frames and 64 tokens, where tiny arrays
# are all padding, 1.6x and 5.4x. Stated tolerance, at the default tiny config: arguments within
# 1.5x, total within 2x of the CPU figure. At real widths the two agree closely (docs/plan.md).
ARGUMENT_TOLERANCE, TOTAL_TOLERANCE = 1.5, 2.0


def test_tpu_memory_figure_is_close_to_the_cpu_figure():
    if not topology.libtpu_available():
        message = "libtpu is not installed: pip install -e '.[test,plan]'"
        if os.environ.get("CI"):  # CI installs the plan extra: a missing libtpu is a broken install
            pytest.fail(message)
        pytest.skip(message)
    # Like for like: both on the XLA attention path (auto would give TPU splash attention).
    config = load_config("configs/sf2t.py", ["checkpoint.every=1000", "model.attention=xla"])
    tpu = aot.compile_step(config, topology.parse("v5e:2x2")).memory
    cpu = aot.compile_step(config, topology.parse("cpu:4")).memory
    assert cpu["argument"] <= tpu["argument"] <= ARGUMENT_TOLERANCE * cpu["argument"], (tpu, cpu)
    tpu_data, cpu_data = tpu["total"] - tpu["generated_code"], cpu["total"] - cpu["generated_code"]
    assert cpu_data / TOTAL_TOLERANCE <= tpu_data <= TOTAL_TOLERANCE * cpu_data, (tpu, cpu)


def _plan_and_compile_a_preset_as_the_trainer_does(tmp_path, capsys, preset, label):
    """`launch.py plan` of a tiny preset on cpu:8: its table label, the memory analysis of the
    step the trainer compiles, and plan/flops.py's count with the family's projector trained
    and its tower frozen (the LoRA recipe)."""
    config = f"configs/sf2t.py:model={preset},frames=4"
    out = tmp_path / "plan.json"
    launch.main(["plan", "--config", config, "--topology", "cpu:8", *(f"--config.{o}" for o in OVERRIDES),
                 "--json", str(out)])
    assert f"model {preset}" in capsys.readouterr().out
    planned = json.loads(out.read_text())
    assert report.table_row(planned).startswith(f"| {label} | lora | cpu:8 |")
    compiled, geometry, _ = _compile_as_the_trainer_does(from_config(load_config(config, OVERRIDES)))
    stats = compiled.memory_analysis()
    assert {k: planned["memory"][k] for k in aot.MEMORY_FIELDS} == {
        name: getattr(stats, field) for name, field in aot.MEMORY_FIELDS.items()}
    want = flops.train_step_flops(model_lib.model_config(load_config(config, OVERRIDES)),
                                  flops.Workload(geometry.batch_size, geometry.length, geometry.slices,
                                                 geometry.patches), method="lora", lora_rank=16,
                                  train_vision=False, train_merger=True)
    assert planned["analytic_flops"] == pytest.approx(want)


def test_planner_compiles_a_qwen25vl_preset_as_the_trainer_does(tmp_path, capsys):
    _plan_and_compile_a_preset_as_the_trainer_does(tmp_path, capsys, "qwen25vl_tiny", "Qwen2.5-VL-TINY")


def test_planner_compiles_a_llava_next_video_preset_as_the_trainer_does(tmp_path, capsys):
    _plan_and_compile_a_preset_as_the_trainer_does(tmp_path, capsys, "llava_next_video_tiny",
                                                   "LLaVA-NeXT-Video-TINY")


@pytest.mark.parametrize("preset, label", [("qwen2vl_7b", "Qwen2-VL-7B"), ("qwen25vl_72b", "Qwen2.5-VL-72B"),
                                           ("llava_next_video_7b", "LLaVA-NeXT-Video-7B"), ("my_model", "my_model")])
def test_table_labels_come_from_the_family_registry(preset, label):
    assert report._model_label(preset) == label


@pytest.mark.parametrize("experiment, hf_class", [("configs/qwen25vl_7b_lora.py", "Qwen2_5_VLForConditionalGeneration"),
                                                  ("configs/llava_next_video_7b_lora.py",
                                                   "LlavaNextVideoForConditionalGeneration")])
def test_planner_builds_the_7b_experiments_abstract_state_without_compiling(experiment, hf_class):
    """The planner's whole build for a 7B experiment (mesh, parts, optimizer state, batch, all
    abstract) takes about a second; only compiling it is slow on this machine. Its parameters,
    LoRA adapters aside, are transformers' for the same config (counted on the meta device)."""
    import torch
    import transformers
    from flax import traverse_util

    config = load_config(experiment, ["checkpoint.every=1000"])
    plan = aot.build_step(config, jax.devices()[:8])
    state = plan.args[0]
    adapters = sum(int(x.size) for path, x in traverse_util.flatten_dict(state.params).items()
                   if any(str(k).startswith("lora_") for k in path))
    assert adapters > 0 and plan.trainable > adapters
    shape = model_lib.model_config(config)
    hf = getattr(transformers, hf_class)
    with torch.device("meta"):
        theirs = sum(p.numel() for p in hf(hf.config_class(**shape.to_hf_dict())).parameters())
    assert plan.trainable - adapters + plan.frozen == theirs
    assert state.opt_state is not None and plan.geometry.batch_size == int(config.input.batch_size)


def test_analytic_llava_tower_and_projector_flops_are_twice_their_weights():
    """Per frame, CLIP multiplies each of its patches plus the class token by every weight
    matrix of the layers up to `vision_feature_layer` once; the projector each pooled token by
    its two matrices once."""
    from flax import nnx

    from sf2t_jax.models import family

    config = family.preset("llava_next_video_tiny")
    model = nnx.eval_shape(lambda: family.family_of(config).model_class(config, rngs=nnx.Rngs(0)))
    matrices = lambda module: sum(x.size for x in jax.tree.leaves(nnx.state(module, nnx.Param)) if len(x.shape) == 2)
    v = config.vision
    one = flops.Workload(batch=1, seq_len=1, slices=2, patches_per_slice=v.num_patches)
    got = flops.forward_flops(config, one)
    tokens = v.num_patches + 1
    attention = 2 * 2 * tokens * v.embed_dim
    assert config.feature_layer_count == v.depth - 1  # the last layer is not run
    assert got["vision"] == 2 * (2 * v.patch_dim * v.embed_dim * v.num_patches + tokens * config.feature_layer_count
                                 * (2 * matrices(model.vision_tower.layers[0]) + attention))
    assert got["merger"] == 2 * config.tokens_per_frame * 2 * matrices(model.multi_modal_projector)


@pytest.mark.parametrize("name", ["qwen2vl_tiny", "qwen25vl_tiny"])
def test_analytic_vit_block_flops_are_twice_the_block_matrix_weights(name):
    """Per patch, a ViT block multiplies by each of its weight matrices once (attention scores
    aside): Qwen2-VL's fc1/fc2 and Qwen2.5-VL's gated gate/up/down MLP alike."""
    from flax import nnx

    from sf2t_jax.models import family

    config = family.preset(name)
    model = nnx.eval_shape(lambda: family.family_of(config).model_class(config, rngs=nnx.Rngs(0)))
    block = nnx.state(model.visual.blocks[0], nnx.Param)
    weights = sum(x.size for x in jax.tree.leaves(block) if len(x.shape) == 2)
    one = flops.Workload(batch=1, seq_len=1, slices=1, patches_per_slice=4)
    two_blocks = flops.forward_flops(config, one)["vision"]
    v = config.vision
    patch_embed = 2 * v.patch_dim * v.embed_dim
    attention = 2 * 2 * 4 * v.embed_dim
    assert two_blocks == 4 * (patch_embed + v.depth * (2 * weights + attention))
