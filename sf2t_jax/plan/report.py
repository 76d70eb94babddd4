"""From a compiled step to a projection: memory per device vs HBM, FLOPs, step time, tokens/s.

Where each figure comes from:
  memory      XLA's `memory_analysis()` of the compiled step, bytes per device. total =
              arguments + outputs - aliased + temporaries + generated code: what the program
              holds at its peak (MaxText's formula, plus the program itself; donated state
              outputs reuse their argument buffers, which is the alias figure).
  flops       analytic (`plan/flops.py`: every matmul of the forward and backward pass, for
              the whole global batch), because XLA's `cost_analysis()` counts the body of a
              `while` loop once: with `model.scan_layers` (and `train.grad_accum` > 1) its figure
              is a fraction of the truth. XLA's figure is printed too, labelled, per device.
  step time   analytic FLOPs / (chips x bf16 peak x MFU) at an *assumed* model-FLOPs
              utilisation (`mfu`, default 40%): a projection, not a measurement. Remat's
              recomputation is not in the FLOPs (model FLOPs, not hardware FLOPs), so it lowers
              the MFU a run reaches. XLA's own estimate (`optimal_seconds`) is shown when the
              compiler gives one; it shares cost_analysis' loop undercount.
  tokens/s    batch rows x sequence length (padding included, as computed) / step time.
"""
from __future__ import annotations

import json
from typing import Any

from sf2t_jax.experiment import Experiment
from sf2t_jax.models import family as families
from sf2t_jax.plan import flops as flops_lib
from sf2t_jax.plan.aot import CompileResult
from sf2t_jax.plan.topology import GIB, Topology

DEFAULT_MFU = 0.40


def analytic_flops(config: Experiment, result: CompileResult) -> dict[str, float]:
    """plan/flops.py's train-step FLOPs for this config's method, trained parts and batch."""
    plan = result.plan
    g = plan.geometry
    workload = flops_lib.Workload(batch=g.batch_size, seq_len=g.length, slices=g.slices, patches_per_slice=g.patches)
    trained = plan.trained_paths
    family = families.family_of(plan.model_config)
    return flops_lib.train_step_flops(
        plan.model_config, workload, method=config.method, lora_rank=config.lora.rank,
        train_vision=any(p.startswith(family.tower_prefixes) for p in trained),
        train_merger=any(p.startswith(family.projector_prefixes) for p in trained))


def project(config: Experiment, topology: Topology, result: CompileResult, *, mfu: float = DEFAULT_MFU,
            label: str = "") -> dict[str, Any]:
    """Every figure of the plan as a JSON-serialisable dict (see the module docstring)."""
    plan = result.plan
    g = plan.geometry
    chips = plan.mesh.size
    flops = analytic_flops(config, result)
    tokens = g.batch_size * g.length
    out: dict[str, Any] = {
        "config": label, "topology": topology.name, "slices": topology.slices, "chip": topology.kind,
        "chips": chips, "mesh": dict(plan.mesh.shape), "method": config.method, "model": config.model.name,
        "remat": config.model.remat, "scan_layers": config.model.scan_layers,
        "frozen_dtype": config.model.frozen_storage_dtype,
        "grad_accum": config.train.grad_accum,
        "attention": {"setting": config.model.attention, "kernels": result.attention_kernels},
        "batch": {"rows": g.batch_size, "length": g.length, "slices": g.slices, "grid_hw": list(g.grid_hw),
                  "frames": config.input.frame_budget, "resolution": list(config.input.resolution),
                  "tokens": tokens},
        "parameters": {"trained": plan.trainable, "frozen": plan.frozen},
        "compile_seconds": round(result.compile_seconds, 1),
        "memory": result.memory, "oom": result.oom or None, "oom_bytes": result.oom_bytes,
        "hbm_bytes": topology.chip.hbm_bytes if topology.chip else None,
        "analytic_flops": flops, "xla_cost": result.xla_cost, "assumed_mfu": mfu,
    }
    fits = None
    if result.memory is None:
        fits = False
    elif topology.chip:
        fits = result.memory["total"] <= topology.chip.hbm_bytes
    out["fits"] = fits
    if topology.chip:
        peak = chips * topology.chip.peak_flops
        at_peak = flops["total"] / peak
        out["step_seconds_at_peak"] = at_peak
        out["step_seconds"] = at_peak / mfu
        out["tokens_per_second"] = tokens / out["step_seconds"]
        xla_seconds = result.xla_cost.get("optimal_seconds")
        if xla_seconds and xla_seconds > 0:
            out["xla_step_seconds"] = xla_seconds
            out["xla_implied_mfu"] = flops["total"] / (peak * xla_seconds)
    return out


# ----------------------------------------------------------------------------------------
# Text
# ----------------------------------------------------------------------------------------
def _size(n: float) -> str:
    for unit, scale in (("GiB", GIB), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:8.2f} {unit}"
    return f"{n:8.0f} B  "


def _kernels(p: dict[str, Any]) -> str:
    if p["memory"] is None:
        return "unknown (the program did not compile)"
    kernels = sorted(p["attention"]["kernels"].items())
    return ", ".join(f"{name} x{n}" for name, n in kernels) or "XLA (no fused kernel)"


def format_text(p: dict[str, Any], topology: Topology) -> str:
    b = p["batch"]
    lines = [
        f"plan: {p['config']} on {topology.describe()}",
        f"mesh {p['mesh']}; model {p['model']}, method {p['method']}, remat {p['remat']}, scan_layers "
        f"{p['scan_layers']}, frozen weights {p['frozen_dtype']}, grad_accum {p['grad_accum']}",
        f"parameters: {p['parameters']['trained']:,} trained (+ AdamW state), {p['parameters']['frozen']:,} frozen",
        f"batch: {b['rows']} rows x {b['length']} tokens = {b['tokens']:,} tokens/step; {b['slices']} slices x "
        f"{b['grid_hw'][0]}x{b['grid_hw'][1]} patches per row ({b['frames']} frames at "
        f"{b['resolution'][0]}x{b['resolution'][1]})",
        f"attention: model.attention={p['attention']['setting']} -> " + _kernels(p),
        f"compile: {p['compile_seconds']:.1f} s",
        "",
    ]
    m, hbm = p["memory"], p["hbm_bytes"]
    if m is None:
        need = f" (it reported needing {p['oom_bytes'] / GIB:.2f} GiB)" if p["oom_bytes"] else ""
        lines += [f"memory per device: DOES NOT FIT: the compiler refused the program{need}:",
                  "  " + p["oom"].splitlines()[0][:400]]
    else:
        share = f" of {hbm / GIB:.0f} GiB HBM ({100 * m['total'] / hbm:.0f}%)" if hbm else ""
        verdict = {True: "fits", False: "DOES NOT FIT", None: "no HBM figure for this device"}[p["fits"]]
        lines += ["memory per device (XLA memory_analysis of the compiled step):",
                  f"  arguments      {_size(m['argument'])}   state, LoRA RNG streams and batch shards",
                  f"  outputs        {_size(m['output'])}   new state and metrics",
                  f"  aliased       -{_size(m['alias'])}   outputs written into donated arguments",
                  f"  temporaries    {_size(m['temp'])}   activations, gradients, optimizer scratch",
                  f"  generated code {_size(m['generated_code'])}",
                  f"  total          {_size(m['total'])}{share}: {verdict}"]
    f = p["analytic_flops"]
    parts = ", ".join(f"{k} {v:.3g}" for k, v in f.items() if k != "total")
    lines += ["", "FLOPs per step:",
              f"  analytic (plan/flops.py)  {f['total']:.4g}  ({parts})"]
    if "flops" in p["xla_cost"]:
        lines.append(f"  XLA cost_analysis         {p['xla_cost']['flops']:.4g} per device: counts each while-loop body "
                     "(scanned layers, accumulation steps) once, so it is not a step total")
    if "step_seconds" in p:
        lines += ["", "step time (projected, not measured):",
                  f"  at 100% of bf16 peak      {p['step_seconds_at_peak']:.3f} s (lower bound)",
                  f"  at an assumed {100 * p['assumed_mfu']:.0f}% MFU      {p['step_seconds']:.3f} s -> "
                  f"{p['tokens_per_second']:,.0f} tokens/s ({p['tokens_per_second'] / p['chips']:,.0f} per chip)"]
        if "xla_step_seconds" in p:
            lines.append(f"  XLA's estimate            {p['xla_step_seconds']:.4g} s (optimal_seconds; implies "
                         f"{100 * p['xla_implied_mfu']:.0f}% MFU; shares cost_analysis' loop undercount)")
    else:
        lines += ["", "step time: no published peak for this device (plan/peak.py measures a CPU's)"]
    return "\n".join(lines)


def to_json(p: dict[str, Any]) -> str:
    return json.dumps(p, indent=2, default=str)


# ----------------------------------------------------------------------------------------
# Markdown table (benchmarks/plan_table.py)
# ----------------------------------------------------------------------------------------
def table_header(mfu: float = DEFAULT_MFU) -> str:
    return ("| model | method | topology | mesh (data, fsdp, tensor) | memory / chip | HBM / chip | fits | "
            f"TFLOP / step (analytic) | step time at {100 * mfu:.0f}% MFU | tokens/s | compile |\n"
            "|---|---|---|---|---|---|---|---|---|---|---|")


def table_row(p: dict[str, Any]) -> str:
    mesh = p["mesh"]
    mesh_text = f"{mesh.get('data', 1)}, {mesh.get('fsdp', 1)}, {mesh.get('tensor', 1)}"
    hbm = f"{p['hbm_bytes'] / GIB:.0f} GiB" if p["hbm_bytes"] else "-"
    if p["memory"] is not None:
        memory = f"{p['memory']['total'] / GIB:.2f} GiB"
    elif p["oom_bytes"]:
        memory = f"> {p['oom_bytes'] / GIB:.1f} GiB (refused)"
    else:
        memory = "refused"
    fits = {True: "yes", False: "**no**", None: "-"}[p["fits"]]
    step = f"{p['step_seconds']:.2f} s" if "step_seconds" in p else "-"
    tokens = f"{p['tokens_per_second']:,.0f}" if "tokens_per_second" in p and p["fits"] else "-"
    if p["fits"] is False:
        step = "-"
    model = _model_label(p["model"])
    return (f"| {model} | {p['method']} | {p['topology']} | {mesh_text} | {memory} | {hbm} | {fits} | "
            f"{p['analytic_flops']['total'] / 1e12:,.0f} | {step} | {tokens} | {p['compile_seconds']:.0f} s |")


def _model_label(preset: str) -> str:
    """The family registry's label of a preset ('qwen2vl_7b' -> 'Qwen2-VL-7B',
    'llava_next_video_7b' -> 'LLaVA-NeXT-Video-7B'); a name no family holds, unchanged."""
    try:
        return families.preset_label(preset)
    except KeyError:
        return preset
