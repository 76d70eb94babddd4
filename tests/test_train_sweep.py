"""Ablation files: every variant is a valid config, stages chain, and `launch.py sweep --dry-run`
lists them."""
import os
import subprocess
import sys

import pytest

from sf2t_jax.cli.sweep import plan
from sf2t_jax.configuration import load_config, set_by_path
from sf2t_jax.experiment import from_config
from sf2t_jax.parallel.mesh import make_mesh
from sf2t_jax.parallel.sharding import named_rules
from sf2t_jax.train import model as model_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ABLATIONS = {
    "leave_one_out": ["all", "no_count", "no_consistency", "no_localize", "no_disorder", "no_rearrange"],
    "presentation": ["video", "images"],
    "frames": ["frames4", "frames8", "frames16", "frames32"],
    "lora_rank": ["rank4", "rank8", "rank16", "rank32", "rank64"],
    "vision": ["vit_frozen_merger_trained", "vision_frozen", "vision_trained"],
    "sft_schedule": ["sft", "sf2t", "sequential/sft", "sequential/sf2t", "joint"],
}


def _config(run):
    config = load_config(run["spec"])
    for key, value in run["overrides"].items():
        set_by_path(config, key, value)
    return config


@pytest.mark.parametrize("name", sorted(ABLATIONS))
def test_every_variant_is_a_valid_config(name):
    runs = plan(f"configs/ablations/{name}.py", "/w")
    assert [r["name"] for r in runs] == ABLATIONS[name]
    assert [r["workdir"] for r in runs] == [f"/w/{n}" for n in ABLATIONS[name]]
    configs = [_config(r) for r in runs]
    # Every variant differs (the first stage of 'sequential' is the 'sft' run, in its own workdir).
    distinct = [str(c) for r, c in zip(runs, configs) if r["name"] != "sequential/sft"]
    assert len(set(distinct)) == len(distinct)
    if name == "vision":  # the parameter regexes select what they say
        mesh, rules = make_mesh(fsdp=8), named_rules("default")
        trained = []
        for config in configs:
            experiment = from_config(config)
            parts = model_lib.split_model(experiment, model_lib.model_config(experiment), mesh, rules)
            trained.append(sorted({k for k in parts.abstract["trainable"]["visual"]} if "visual" in parts.abstract[
                "trainable"] else []))
        assert trained == [["merger"], [], ["blocks", "merger", "patch_embed"]]


def test_shapes_follow_the_variant():
    by_name = {r["name"]: _config(r) for r in plan("configs/ablations/presentation.py:model=qwen2vl_7b", "/w")}
    assert by_name["images"].input.max_length == 2048 and by_name["video"].input.max_length == 1024
    frames = {r["name"]: _config(r) for r in plan("configs/ablations/frames.py", "/w")}
    assert frames["frames32"].input.frame_budget == 32 and frames["frames32"].input.tasks.count.n_frames == (2, 32)
    assert frames["frames4"].input.tasks.localize.n_frames == (4, 4)
    assert _config(plan("configs/ablations/lora_rank.py", "/w", only="rank4")[0]).lora.alpha == 8.0


def test_sequential_stages_start_from_the_previous_export():
    runs = plan("configs/ablations/sft_schedule.py", "gs://b/abl", only="sequential", init_from="/ckpt/base")
    assert [r["workdir"] for r in runs] == ["gs://b/abl/sequential/sft", "gs://b/abl/sequential/sf2t"]
    assert runs[0]["overrides"] == {"data.sft_weight": 1.0, "init_from": "/ckpt/base"}
    assert runs[1]["overrides"] == {"data.sft_weight": 0.0, "init_from": "gs://b/abl/sequential/sft/export"}


def test_dry_run_lists_the_variants_and_runs_nothing(tmp_path):
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "launch.py"), "sweep", "configs/ablations/lora_rank.py",
                           "--workdir", str(tmp_path), "--dry-run", "--only", "rank4,rank64",
                           "--config.train.steps=5"], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "JAX_PLATFORMS": "cpu"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.splitlines() == [
        f"[1/2] rank4: --config configs/ablations/lora_rank.py lora.rank=4, lora.alpha=8.0 -> {tmp_path}/rank4",
        f"[2/2] rank64: --config configs/ablations/lora_rank.py lora.rank=64, lora.alpha=128.0 -> {tmp_path}/rank64"]
    assert not os.listdir(tmp_path)
    bad = subprocess.run([sys.executable, os.path.join(ROOT, "launch.py"), "sweep", "configs/ablations/lora_rank.py",
                          "--workdir", str(tmp_path), "--dry-run", "--only", "rank5"], cwd=ROOT, capture_output=True,
                         text=True, timeout=120, env={**os.environ, "JAX_PLATFORMS": "cpu"})
    assert bad.returncode != 0 and "--only rank5: no such variant" in bad.stderr
