"""The planner's table: Qwen2-VL-2B and 7B, LoRA and full fine-tuning, on a few TPU topologies.

Each row is one `launch.py plan` (an ahead-of-time compile of the real train step, in its own
process so that one refused or crashed compile cannot take the others down); rows are appended
to a JSON-lines file as they finish, and a rerun skips the rows it already has. Prints the
markdown table of docs/plan.md.

    pip install '.[plan]'            # libtpu, for the TPU topologies
    python benchmarks/plan_table.py --rows runs/plan_rows.jsonl
    python benchmarks/plan_table.py --rows runs/plan_rows.jsonl --table-only
    python benchmarks/plan_table.py --models qwen2vl_tiny --topologies cpu:8 --rows /tmp/rows.jsonl  # no libtpu

Workload: configs/sf2t.py as it is for each model (global batch 32, 16 frames at 224x224 in
1024 tokens, LoRA rank 16 on the LLM projections, ViT frozen, merger trained), FSDP over every
chip (mesh.ici = (1, -1, 1)), plus SETTINGS below: the recipe of docs/training.md's 7B example.
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

MODELS = ("qwen2vl_2b", "qwen2vl_7b")
METHODS = ("lora", "full")
TOPOLOGIES = ("v5e:2x2", "v5e:4x4", "v5p:2x2x1", "v5p:2x2x2")
# Scanned layers (compile one layer, not all), full remat (one layer's activations live in the
# backward pass), frozen weights stored in bfloat16 (what the matmuls see anyway).
SETTINGS = ("model.scan_layers=true", "model.remat=full", "model.frozen_dtype=bfloat16")


def row_key(model: str, method: str, topology: str) -> str:
    return f"{model}/{method}/{topology}"


def plan_row(model: str, method: str, topology: str, settings, mfu: float | None, timeout: float) -> dict:
    """One `launch.py plan` in a subprocess -> its JSON figures (+ 'key', 'wall_seconds')."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "plan.json")
        cmd = [sys.executable, os.path.join(ROOT, "launch.py"), "plan", "--config",
               f"configs/sf2t.py:model={model},method={method}", "--topology", topology, "--json", out,
               *(f"--config.{s}" for s in settings)]
        if mfu is not None:
            cmd += ["--mfu", str(mfu)]
        env = dict(os.environ, JAX_PLATFORMS="cpu")
        start = time.time()
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0 or not os.path.exists(out):
            tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
            raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{tail}")
        with open(out) as f:
            row = json.load(f)
    row.update(key=row_key(model, method, topology), wall_seconds=round(time.time() - start, 1))
    return row


def read_rows(path: str) -> dict[str, dict]:
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        return {r["key"]: r for r in (json.loads(line) for line in f if line.strip())}


def table(rows) -> str:
    from sf2t_jax.plan import report

    mfus = {r["assumed_mfu"] for r in rows} or {report.DEFAULT_MFU}
    if len(mfus) > 1:
        raise SystemExit(f"the rows were planned at different MFUs {sorted(mfus)}: plan them again with one --mfu")
    return "\n".join([report.table_header(mfus.pop()), *(report.table_row(r) for r in rows)])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", required=True, help="JSON-lines file of finished rows (appended; reruns skip them)")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--topologies", default=",".join(TOPOLOGIES))
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="extra config override for every row (after SETTINGS)")
    parser.add_argument("--mfu", type=float, help="assumed MFU (launch.py plan's default when not given)")
    parser.add_argument("--jobs", type=int, default=1, help="compiles at once (each needs a few GB of RAM)")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per row")
    parser.add_argument("--table-only", action="store_true", help="print the table of the rows file, compile nothing")
    args = parser.parse_args(argv)

    wanted = [(m, k, t) for m, k, t in itertools.product(args.models.split(","), args.methods.split(","),
                                                        args.topologies.split(","))]
    done = read_rows(args.rows)
    todo = [] if args.table_only else [w for w in wanted if row_key(*w) not in done]
    settings = (*SETTINGS, *args.set)

    def one(w):
        try:
            row = plan_row(*w, settings, args.mfu, args.timeout)
        except (RuntimeError, subprocess.TimeoutExpired) as e:
            print(f"{row_key(*w)}: {e}", file=sys.stderr, flush=True)
            return
        with open(args.rows, "a") as f:
            f.write(json.dumps(row, default=str) + "\n")
        print(f"{row['key']}: {'fits' if row['fits'] else 'does not fit' if row['fits'] is False else 'done'} "
              f"(compile {row['compile_seconds']} s, wall {row['wall_seconds']} s)", file=sys.stderr, flush=True)

    if todo:
        os.makedirs(os.path.dirname(os.path.abspath(args.rows)), exist_ok=True)
        with ThreadPoolExecutor(max(args.jobs, 1)) as pool:
            list(pool.map(one, todo))
    rows = read_rows(args.rows)
    print(table([rows[row_key(*w)] for w in wanted if row_key(*w) in rows]))


if __name__ == "__main__":
    main()
