"""Peak host memory of `launch.py convert --from-hf` against the size of the weights.

Writes a Qwen2-VL checkpoint of a preset's shape (random weights, bfloat16, saved by
transformers in 1 GB shards), then converts it under `/usr/bin/time -v` and prints the peak
resident set size next to one and two copies of the weights.

    python benchmarks/convert_memory.py --preset qwen2vl_2b --workdir /tmp/convert_bench

Needs the test extra (torch, transformers) to write the checkpoint.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def write_random_checkpoint(preset: str, out_dir: str) -> int:
    """Saves random bfloat16 weights of `preset` with transformers; returns the weight bytes."""
    import torch
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration

    from sf2t_jax.models.config import preset as get_preset

    config = Qwen2VLConfig(**get_preset(preset).to_hf_dict())
    config.torch_dtype = torch.bfloat16
    with torch.device("meta"):
        model = Qwen2VLForConditionalGeneration(config)
    model = model.to_empty(device="cpu").to(torch.bfloat16)
    model.tie_weights()  # to_empty() unties the 2B model's lm_head from its embedding
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.02, generator=generator)
    model.save_pretrained(out_dir, max_shard_size="1GB")
    nbytes = sum(p.numel() * p.element_size() for p in model.parameters())
    del model
    return nbytes


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="qwen2vl_2b")
    parser.add_argument("--workdir", default="/tmp/convert_bench")
    args = parser.parse_args()

    hf_dir, out_dir = os.path.join(args.workdir, "hf"), os.path.join(args.workdir, "native")
    shutil.rmtree(args.workdir, ignore_errors=True)
    os.makedirs(args.workdir)
    t0 = time.time()
    nbytes = write_random_checkpoint(args.preset, hf_dir)
    print(f"wrote {args.preset} checkpoint: {nbytes / 2**30:.2f} GiB of weights in {time.time() - t0:.0f} s")

    cmd = ["/usr/bin/time", "-v", sys.executable, os.path.join(ROOT, "launch.py"), "convert",
           "--from-hf", hf_dir, "--out", out_dir]
    t0 = time.time()
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "JAX_PLATFORMS": "cpu"})
    if proc.returncode:
        sys.exit(proc.stderr[-3000:])
    peak_kib = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr).group(1))
    peak = peak_kib * 1024
    print(f"command: {' '.join(cmd[2:])}")
    print(f"conversion time      {time.time() - t0:8.1f} s")
    print(f"weights (1 copy)     {nbytes / 2**30:8.2f} GiB")
    print(f"2 copies             {2 * nbytes / 2**30:8.2f} GiB")
    print(f"peak RSS             {peak / 2**30:8.2f} GiB  ({peak / nbytes:.2f}x the weights)")
    shutil.rmtree(args.workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
