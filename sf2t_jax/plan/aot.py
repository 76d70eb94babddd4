"""Ahead-of-time compile of the real train step for a topology: memory and cost, no devices used.

    result = compile_step(config, topology.parse("v5e:4x4"))
    result.memory["temp"], result.xla_cost.get("flops"), result.compile_seconds

The trainer's own build function (`train/setup.py`, which `train/loop.py` calls) makes
everything here: the mesh from `config.mesh`, the model split into trainable / frozen / extra
with their shardings, the optimizer and its state shardings, the batch shardings, and the
jitted step with every option the config sets (state donated). Only the values differ: every argument is a
`jax.ShapeDtypeStruct` carrying its `NamedSharding`, so nothing is allocated, and a 7B model
plans on a laptop. The batch geometry is the one `data.source` would give (synthetic, or the
video pipeline's `input` section) without opening any data.
"""
from __future__ import annotations

import dataclasses
import logging
import re
import time
from typing import Any

import jax
from flax import traverse_util

from sf2t_jax import experiment as experiment_lib
from sf2t_jax.errors import InputError
from sf2t_jax.experiment import Experiment, ExperimentLike
from sf2t_jax.plan.collectives import step_activation_collectives
from sf2t_jax.plan.topology import Topology
from sf2t_jax.train import data as data_lib
from sf2t_jax.train import model as model_lib
from sf2t_jax.train import setup as setup_lib
from sf2t_jax.train import state as state_lib

log = logging.getLogger(__name__)

# CompiledMemoryStats fields -> our names (bytes per device).
MEMORY_FIELDS = {"argument": "argument_size_in_bytes", "output": "output_size_in_bytes",
                 "temp": "temp_size_in_bytes", "alias": "alias_size_in_bytes",
                 "generated_code": "generated_code_size_in_bytes"}


@dataclasses.dataclass
class StepPlan:
    """The lowered-ready step: the jitted function and its abstract arguments, plus what the
    projection needs to know about the model and the batch."""

    step: Any  # train/step.py TrainStep
    args: tuple  # (state, extra, batch) of ShapeDtypeStructs with shardings
    mesh: jax.sharding.Mesh
    geometry: data_lib.BatchGeometry
    model_config: Any  # a `models.family.ModelConfig`
    trainable: int  # parameters
    frozen: int
    trained_paths: tuple[str, ...]  # dotted paths of trained parameters

    def lower(self):
        return self.step.lower(*self.args)


@dataclasses.dataclass
class CompileResult:
    """memory: bytes per device (MEMORY_FIELDS keys + 'total' = argument + output - alias + temp
    + generated_code: MaxText's formula, donated outputs reusing their argument buffers, plus the
    program itself). None when the compiler refused the program for lack of memory; then `oom`
    holds its message and `oom_bytes` the figure it reported needing per device (a lower bound:
    libtpu may name its temporaries alone), when it gave one."""

    plan: StepPlan
    memory: dict[str, int] | None
    xla_cost: dict[str, float]
    compile_seconds: float
    oom: str = ""
    oom_bytes: int | None = None
    # All-gathers / all-reduces of a global-batch activation (plan/collectives.py): each is
    # memory per device that does not fall as devices are added.
    activation_collectives: tuple = ()
    # Fused attention kernels in the program by kernel name (splash_mha_fwd..., cuDNN fmha):
    # what `model.attention` resolved to for this topology; empty on the XLA path.
    attention_kernels: dict[str, int] = dataclasses.field(default_factory=dict)


# A splash kernel is a Mosaic custom call named after its kernel; cuDNN's is a custom call to
# a `__cudnn$fmha...` target.
_FUSED_ATTENTION = re.compile(r"^\s*(?:ROOT )?%(splash_[a-z_]+?)(?:\.\d+)* = .*custom-call\("
                              r"|custom_call_target=\"(__cudnn\$fmha[A-Za-z]*)\"", re.MULTILINE)


def attention_kernels(hlo_text: str) -> dict[str, int]:
    """Fused attention kernels in a compiled program's text: kernel name -> how many calls."""
    counts: dict[str, int] = {}
    for match in _FUSED_ATTENTION.finditer(hlo_text):
        name = match.group(1) or match.group(2)
        counts[name] = counts.get(name, 0) + 1
    return counts


def batch_geometry(config: Experiment, shape) -> data_lib.BatchGeometry:
    """The static batch shapes `data.open_batches` would give, computed from the config alone."""
    source = config.data.source
    if source == "synthetic":
        from sf2t_jax.train import synthetic_batches

        g = synthetic_batches.Geometry(config.input, shape)
        return data_lib.BatchGeometry(batch_size=config.input.batch_size, length=g.length, slices=g.slices,
                                      grid_hw=g.grid_hw, steps_per_epoch=1, num_tasks=synthetic_batches.NUM_TASK_IDS,
                                      task_names=synthetic_batches.TASK_NAMES + ("sft",), patch_dim=g.patch_dim,
                                      tokens_per_slice=g.tokens_per_slice)
    if source == "videos":
        from sf2t_jax.models.family import row_format

        input_config = config.input
        rows = row_format(shape)
        g = input_config.geometry_of(rows)
        return data_lib.BatchGeometry(batch_size=input_config.batch_size, length=input_config.max_length,
                                      slices=g.slices, grid_hw=tuple(g.grid_hw), steps_per_epoch=1,
                                      num_tasks=len(input_config.task_names), task_names=input_config.task_names,
                                      patch_dim=rows.layout.patch_dim, tokens_per_slice=g.tokens_per_slice)
    raise InputError(f"data.source={source!r}: expected 'synthetic' or 'videos'")


def build_step(config: ExperimentLike, devices) -> StepPlan:
    """Mesh, model parts, optimizer, shardings and the jitted train step over `devices`, by the
    trainer's own build (`train/setup.py`); arguments abstract. Config errors are InputErrors
    naming the field; anything else is a bug and keeps its traceback."""
    config = experiment_lib.of(config)
    model = setup_lib.build_model(config, devices)
    geometry = batch_geometry(config, model.shape)
    # The schedule's length does not change the program.
    built = setup_lib.build_step(config, model, geometry, max(config.train.steps, 1))
    parts = model.parts
    state = state_lib.with_shardings(state_lib.abstract_state(parts, built.tx), built.state_shardings)
    extra = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                         parts.abstract["extra"], parts.shardings["extra"])
    trained = tuple(".".join(map(str, k)) for k in traverse_util.flatten_dict(parts.abstract["trainable"]))
    return StepPlan(step=built.step, args=(state, extra, geometry.abstract(built.batch_shardings)), mesh=model.mesh,
                    geometry=geometry, model_config=model.shape, trainable=model_lib.count(parts.abstract["trainable"]),
                    frozen=model_lib.count(parts.abstract["frozen"]), trained_paths=trained)


def memory_stats(compiled) -> dict[str, int]:
    """`compiled.memory_analysis()` -> {argument, output, temp, alias, generated_code, total}
    in bytes per device (see CompileResult for `total`)."""
    stats = compiled.memory_analysis()
    out = {name: int(getattr(stats, field, 0) or 0) for name, field in MEMORY_FIELDS.items()}
    out["total"] = out["argument"] + out["output"] - out["alias"] + out["temp"] + out["generated_code"]
    return out


COST_FIELDS = ("flops", "transcendentals", "bytes accessed", "optimal_seconds")


def xla_cost(compiled) -> dict[str, float]:
    """The whole-program figures of `compiled.cost_analysis()` (per device); libtpu adds
    per-operand 'utilization*' and 'bytes accessed*' entries, left out."""
    cost = compiled.cost_analysis()
    cost = (cost[0] if cost else {}) if isinstance(cost, (list, tuple)) else (cost or {})
    return {k: float(cost[k]) for k in COST_FIELDS if isinstance(cost.get(k), (int, float))}


# libtpu's out-of-memory reports: "Ran out of memory on HBM, the total memory required for HLO
# temporaries (290.25G) exceeds available HBM (15.75G)." and "Used 25.31G of 15.75G hbm.".
_OOM_NEED = (re.compile(r"required for [\w ]+\(([0-9.]+)([KMGT]?)\) exceeds available"),
             re.compile(r"Used ([0-9.]+)([KMGT]?) of [0-9.]+[KMGT]? hbm"))
_UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


def _oom_bytes(message: str) -> int | None:
    for pattern in _OOM_NEED:
        m = pattern.search(message)
        if m:
            return int(float(m.group(1)) * _UNITS[m.group(2)])
    return None


def compile_step(config: ExperimentLike, topology: Topology) -> CompileResult:
    """Lowers and compiles the real train step for `topology`. A program the TPU compiler
    refuses for lack of HBM is a result (memory None, `oom` set), not an error."""
    plan = build_step(config, topology.devices)
    start = time.perf_counter()
    lowered = plan.lower()
    try:
        compiled = lowered.compile()
    except Exception as e:  # jaxlib's XlaRuntimeError; libtpu reports RESOURCE_EXHAUSTED for HBM
        message = str(e)
        if "RESOURCE_EXHAUSTED" not in message and "Ran out of memory" not in message:
            raise
        seconds = time.perf_counter() - start
        log.info("compile refused for lack of memory after %.1fs", seconds)
        return CompileResult(plan, None, {}, seconds, oom=message.strip(), oom_bytes=_oom_bytes(message))
    seconds = time.perf_counter() - start
    text = compiled.as_text()
    found = tuple(step_activation_collectives(text, plan.geometry))
    return CompileResult(plan, memory_stats(compiled), xla_cost(compiled), seconds, activation_collectives=found,
                         attention_kernels=attention_kernels(text))
