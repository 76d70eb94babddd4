"""`launch.py plan`: compile the real train step for a TPU topology ahead of time, on this machine.

    python launch.py plan --config configs/sf2t.py:model=qwen2vl_7b --topology v5e:4x4
    python launch.py plan --config configs/sf2t.py:model=qwen2vl_2b,method=full --topology v5p:2x2x2 \\
        --config.model.remat=full --config.model.scan_layers=true --mfu 0.35 --json plan.json
    python launch.py plan --config configs/sf2t.py --topology cpu:8        # no libtpu needed

Prints per-device memory (arguments, outputs, aliased, temporaries, total vs the chip's HBM)
and whether it fits, XLA's FLOP count and the analytic one (sf2t_jax/plan/flops.py), and the
projected step time and tokens/s at an assumed MFU. The mesh comes from the config's `mesh`
section (default: FSDP over every chip). TPU topologies (v4:AxBxC, v5e:AxB, v5p:AxBxC,
v6e:AxB) need libtpu: `pip install '.[plan]'`. Nothing runs on a device. A program that fits
takes minutes to compile (a scanned 2B or 7B step, `--config.model.scan_layers=true`: 1 minute
on a free core, 6-11 on a shared 2-core machine; unscanned, longer); one that does not fit is
refused in seconds. docs/plan.md explains every figure.
"""
from __future__ import annotations

import argparse
import logging
import os

HELP = "ahead-of-time compile for a TPU topology: memory per chip, FLOPs, projected step time"


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, metavar="FILE[:ARG]", help="experiment config, e.g. configs/sf2t.py")
    parser.add_argument("--topology", required=True, metavar="NAME",
                        help="v5e:4x4, v5p:2x2x2, v4:2x2x1, v6e:2x4, or cpu:N (the local CPU devices)")
    parser.add_argument("--slices", type=int, default=1,
                        help="TPU multislice: this many identical slices (set --config.mesh.dcn to use them)")
    parser.add_argument("--mfu", type=float, default=None,
                        help="model-FLOPs utilisation assumed for the projected step time (default 0.40)")
    parser.add_argument("--json", metavar="FILE", help="also write every figure as JSON")


def _prepare_jax(topology: str) -> None:
    """Planning runs nothing on an accelerator: the CPU backend only (libtpu would otherwise look
    for a TPU), with enough CPU devices for `cpu:N`. Only possible before JAX starts."""
    import jax
    from jax._src import xla_bridge

    if xla_bridge.backends_are_initialized():
        return
    jax.config.update("jax_platforms", "cpu")
    kind, _, n = topology.partition(":")
    if kind == "cpu" and n.isdigit() and "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
        jax.config.update("jax_num_cpu_devices", int(n))


def run(args: argparse.Namespace) -> None:
    from sf2t_jax import validation
    from sf2t_jax.configuration import load_config
    from sf2t_jax.experiment import from_config

    if args.mfu is not None:
        validation.check_value("--mfu", args.mfu, validation.Float(0.0, 1.0, lo_open=True))
    validation.check_value("--slices", args.slices, validation.Int(1))
    # every field checked before JAX starts: a bad setting fails in a second
    experiment = from_config(load_config(args.config, list(args.overrides)))

    from sf2t_jax.plan import aot, report, topology

    mfu = report.DEFAULT_MFU if args.mfu is None else args.mfu
    _prepare_jax(args.topology)
    topo = topology.parse(args.topology, slices=args.slices)
    logging.info("plan: compiling the train step for %s", topo.describe())
    result = aot.compile_step(experiment, topo)
    label = " ".join([args.config, *(f"--config.{o}" for o in args.overrides)])
    projection = report.project(experiment, topo, result, mfu=mfu, label=label)
    if args.json:  # first: the figures survive a closed stdout
        with open(args.json, "w") as f:
            f.write(report.to_json(projection))
    print(report.format_text(projection, topo), flush=True)
