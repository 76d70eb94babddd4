"""Memory per device of the compiled train step as devices are added, and the collectives that
move whole activations.

Usage: python benchmarks/activation_scaling.py [--devices 1,2,4,8] [--model qwen2vl_small]
                                               [--no-constraints] [--set key=value ...]

Compiles the trainer's real step (`plan/aot.py`, the same build as `launch.py train`) for
`cpu:N` with FSDP over N devices, and prints per device: arguments, temporaries, their ratio
to the one-device figure against the ideal 1/N, and how many all-gathers / all-reduces carry
a global-batch x full-sequence activation (`plan/collectives.py`). Defaults: the issue's
setting, qwen2vl_small (4 x 512), batch 16 x 512 tokens, 16 frames at 112x112, LoRA, scanned
layers, full remat, frozen weights in bfloat16, the whole LM head at once (the blockwise loss,
`--set train.loss_chunk=128`, lowers every figure; the gathered head weight then weighs more).
--no-constraints compiles the same step with activation constraints switched off
(`mesh.constrain_activations=false`: what GSPMD infers alone), for comparison.
"""
from __future__ import annotations

import argparse
import os
import sys

os.environ["XLA_FLAGS"] = os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
os.environ.setdefault("JAX_PLATFORMS", "cpu")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

SETTING = ["model.scan_layers=true", "model.remat=full", "model.frozen_dtype=bfloat16", "checkpoint.every=1000",
           "train.loss_chunk=0"]  # --set train.loss_chunk=128 for the blockwise loss


def measure(model: str, devices: int, overrides: list[str], constraints: bool = True) -> dict:
    from sf2t_jax.configuration import load_config
    from sf2t_jax.plan import aot, topology

    config = load_config(f"configs/sf2t.py:model={model}",
                         SETTING + [f"mesh.constrain_activations={constraints}"] + list(overrides))
    result = aot.compile_step(config, topology.parse(f"cpu:{devices}"))
    return dict(devices=devices, argument=result.memory["argument"], temp=result.memory["temp"],
                seconds=result.compile_seconds, activation_collectives=list(result.activation_collectives))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", default="1,2,4,8")
    parser.add_argument("--model", default="qwen2vl_small")
    parser.add_argument("--no-constraints", action="store_true")
    parser.add_argument("--set", nargs="*", default=[], help="config overrides, key=value")
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f}; model {args.model}; constraints "
          f"{'off' if args.no_constraints else 'on'}; {' '.join(SETTING + args.set)}")
    print(f"{'devices':>7} {'args MiB':>9} {'temp MiB':>9} {'temp x N / temp(1)':>19} {'act. collectives':>17} "
          f"{'compile s':>9}")
    first = None
    for n in map(int, args.devices.split(",")):
        r = measure(args.model, n, args.set, constraints=not args.no_constraints)
        first = first or r
        print(f"{n:>7} {r['argument'] / 2**20:>9.1f} {r['temp'] / 2**20:>9.1f} {r['temp'] * n / first['temp']:>19.2f} "
              f"{len(r['activation_collectives']):>17} {r['seconds']:>9.1f}", flush=True)
        for c in r["activation_collectives"][:3]:
            print(f"        {c.op} {c.shapes}")


if __name__ == "__main__":
    main()
