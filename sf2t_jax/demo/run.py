"""The embedded demo, top to bottom: data, the four training stages, evaluation, the verdict.

    result = run_demo(load_config("configs/demo.py:scale=small"), "runs/demo")

The run folder (WORKDIR):
    demo.json               the demo config, resolved; seconds per stage; the headline numbers
    demo.log                every log line of the run (training progress, eval progress, ETAs)
    configs/<stage>.json    each stage's resolved training config; configs/eval.json
    stages/<stage>/         training workdirs: config.json, metrics/*.jsonl, export/ (the model)
    eval/<stage>/           results.json, results.md, predictions.jsonl, tasks.png, speed.png
    comparison.md           the four settings side by side (scene and fragment level, with CIs)
    tasks.png, speed.png    the same as figures
    claims.md, claims.json  the paper's claims, checked with paired bootstrap CIs over videos

Stages: base (captions, from random init) -> sft (scene QA, from base); sf2t (fragments, from
base); sft_sf2t (fragments, from sft). Re-running the same command resumes: prepared data is
kept, a finished stage is not trained again, a finished evaluation is not redone.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from pathlib import Path

import ml_collections

from sf2t_jax.demo.claims import check_claims, claims_markdown
from sf2t_jax.demo.progress import Plan, duration
from sf2t_jax.demo.stages import stage_config

log = logging.getLogger("sf2t_jax.demo")

# The paper's names of the four settings, in table order.
DISPLAY = {"base": "Base", "sft": "SFT", "sf2t": "SF²T", "sft_sf2t": "SFT+SF²T"}
# A-priori costs on a 2-core CPU (the ETA before anything is measured).
COMPILE_S = 15.0
STEP_S = {"captions": 0.3, "scene_qa": 0.3, "fragments": 0.45}
QUESTION_S = 0.03
PREPARE_S_PER_CLIP = 0.05


@dataclasses.dataclass
class DemoResult:
    """workdir: the run folder; seconds: wall time per stage; metrics: {setting: metrics};
    claims: check_claims' records."""

    workdir: str
    seconds: dict
    metrics: dict
    claims: list


def run_demo(config: ml_collections.ConfigDict, workdir: str, *, progress: bool = True) -> DemoResult:
    # ================================================================================
    # Run folder and logs
    # ================================================================================
    root = Path(workdir).absolute()  # orbax writes checkpoints to absolute paths only
    (root / "configs").mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(root / "demo.log")
    handler.setLevel(logging.INFO)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    top = logging.getLogger()
    level = top.level
    top.addHandler(handler)
    top.setLevel(min(level, logging.INFO) if level else logging.INFO)  # progress lines are INFO
    try:
        return _run(config, root, progress)
    finally:
        top.removeHandler(handler)
        top.setLevel(level)
        handler.close()


def _run(config: ml_collections.ConfigDict, root: Path, progress: bool) -> DemoResult:
    from sf2t_jax.datasets.prepare import prepare

    order = _stage_order(config)
    data_dir = config.data.dir
    bench_items = _estimate_items(config)
    plan = Plan([("prepare", PREPARE_S_PER_CLIP * _clips(config))]
                + [(f"train {s}", COMPILE_S + STEP_S[config.stages[s].mode] * config.stages[s].steps) for s in order]
                + [(f"eval {s}", COMPILE_S + QUESTION_S * bench_items) for s in order]
                + [("compare", 5.0)])
    log.info("demo: scale %s, seed %d, stages %s, run folder %s", config.scale, config.seed, " -> ".join(order), root)

    # ================================================================================
    # 1. Data: the synthetic world, sf2t_corpus, video_sft, FineVidBench (kept if done)
    # ================================================================================
    plan.banner("prepare")
    t0 = time.perf_counter()
    prepared = prepare(config, progress=progress)
    log.info("data:\n%s", prepared.report())
    plan.finish("prepare", time.perf_counter() - t0,
                skipped=all(v == "up to date" for v in prepared.datasets.values()))
    benchmark = str(Path(data_dir) / "finevidbench" / "finevidbench_test.jsonl")
    if not os.path.isfile(benchmark):
        raise FileNotFoundError(f"demo: prepare wrote no benchmark at {benchmark}")
    videos = str(prepared.source)

    # ================================================================================
    # 2-5. Training: base (captions) -> SFT (scene QA); SF²T (fragments) from base and from SFT
    # ================================================================================
    completed_before = {}
    for stage in order:
        plan.banner(f"train {stage}")
        t0 = time.perf_counter()
        completed_before[stage] = _train_stage(config, stage, root, data_dir)
        plan.finish(f"train {stage}", time.perf_counter() - t0, skipped=completed_before[stage])

    # ================================================================================
    # 6. Evaluation of every setting on the benchmark
    # ================================================================================
    eval_cfg = _eval_config(config, benchmark, videos)
    (root / "configs" / "eval.json").write_text(json.dumps(eval_cfg.to_dict(), indent=2, default=str))
    for stage in order:
        plan.banner(f"eval {stage}")
        t0 = time.perf_counter()
        kept = _evaluate_stage(config, eval_cfg, stage, root, redo=not completed_before[stage])
        plan.finish(f"eval {stage}", time.perf_counter() - t0, skipped=kept)

    # ================================================================================
    # The table, the figures, the claims
    # ================================================================================
    plan.banner("compare")
    t0 = time.perf_counter()
    from sf2t_jax.eval import report

    shown = order  # Base, SFT, SF²T, SFT+SF²T
    report.compare([root / "eval" / s for s in shown], root, [DISPLAY.get(s, s) for s in shown])
    claims = check_claims({DISPLAY.get(s, s): root / "eval" / s for s in shown},
                          methods=tuple(m for m in ("loglik", "generate") if m in config.eval.methods),
                          bootstrap=int(config.eval.bootstrap), seed=int(config.seed))
    (root / "claims.json").write_text(json.dumps(claims, indent=1))
    (root / "claims.md").write_text("# The paper's claims on this run\n\n" + claims_markdown(claims))
    plan.finish("compare", time.perf_counter() - t0)

    metrics = {DISPLAY.get(s, s): report.load_results(root / "eval" / s)["metrics"] for s in shown}
    seconds = plan.seconds()
    seconds["total"] = round(time.perf_counter() - plan.start, 1)
    # A resumed run keeps the earlier run's time for the stages it found done.
    earlier = json.loads((root / "demo.json").read_text()).get("seconds", {}) if (root / "demo.json").is_file() else {}
    found_done = plan.skipped()
    seconds_first = {name: earlier.get(name, seconds[name]) for name in found_done if name in seconds}
    (root / "demo.json").write_text(json.dumps({
        "config": config.to_dict(), "seconds": seconds, "found_done": found_done,
        "seconds_when_computed": {**seconds, **seconds_first},  # per stage; "total" is this session's
        "data": str(data_dir), "benchmark": benchmark,
        "headline": {name: _headline(m) for name, m in metrics.items()}}, indent=1, default=str))
    log.info("demo: finished in %s; table %s, claims %s", duration(seconds["total"]), root / "comparison.md",
             root / "claims.md")
    for c in claims:
        log.info("claim: %-40s %-8s %s %.1f vs %s %.1f -> %s", c["claim"], c["method"], c["better"],
                 100 * c["accuracy"][c["better"]], c["worse"], 100 * c["accuracy"][c["worse"]], c["verdict"])
    return DemoResult(str(root), seconds, metrics, claims)


# ----------------------------------------------------------------------------------------
# Stages
# ----------------------------------------------------------------------------------------
def _stage_order(config) -> list[str]:
    """Stages in an order where every stage comes after the one it starts from."""
    known = list(DISPLAY)
    order = []
    pending = sorted(config.stages, key=lambda s: (known.index(s) if s in known else len(known), s))
    while pending:
        ready = [s for s in pending if not config.stages[s].init or config.stages[s].init in order][:1]
        if not ready:
            raise ValueError(f"demo: stages {pending} start from stages that do not exist or form a cycle "
                             f"(init: { {s: config.stages[s].init for s in pending} })")
        order += ready
        pending = [s for s in pending if s not in ready]
    return order


def _train_stage(config, stage: str, root: Path, data_dir: str) -> bool:
    """Trains `stage` (resuming a finished or interrupted workdir); True if it was already complete."""
    from sf2t_jax.train.loop import train

    init = config.stages[stage].init
    init_from = str(root / "stages" / init / "export") if init else ""
    cfg = stage_config(config, stage, data_dir=data_dir, init_from=init_from)
    (root / "configs" / f"{stage}.json").write_text(json.dumps(cfg.to_dict(), indent=2, default=str))
    result = train(cfg, str(root / "stages" / stage))
    if result.status not in ("completed", "already_complete"):
        raise RuntimeError(f"demo: stage {stage} ended {result.status!r} at step {result.step} of "
                           f"{result.total_steps}; run the same command again to resume")
    if result.history:
        first, last = result.history[0], result.history[-1]
        log.info("%s: loss %.3f -> %.3f, token accuracy %.3f -> %.3f over %d steps", stage, first["loss"],
                 last["loss"], first["accuracy"], last["accuracy"], result.step)
    return result.status == "already_complete"


def _eval_config(config, benchmark: str, videos: str) -> ml_collections.ConfigDict:
    from sf2t_jax.eval import eval_config

    e = config.eval
    c = eval_config()
    c.benchmark, c.videos, c.tokenizer = benchmark, videos, config.model.tokenizer
    c.dtype = config.model.dtype
    c.methods, c.batch_size, c.max_videos = e.methods, int(e.batch_size), int(e.max_videos)
    c.video.scene_frames = int(e.scene_frames)
    c.video.size = tuple(config.model.resolution)
    c.prompt.instruction = e.instruction
    c.prompt.history = e.history
    c.prompt.history_answer = e.history_answer
    c.loglik.target = e.loglik_target
    c.metrics.bootstrap = int(e.bootstrap)
    c.metrics.seed = int(config.seed)
    c.mesh.devices = int(config.devices)
    return c


def _evaluate_stage(config, eval_cfg, stage: str, root: Path, *, redo: bool) -> bool:
    """Scores the stage's export on the benchmark; True if an earlier result was kept."""
    from sf2t_jax.eval import EvalSettings, evaluate, load_items, load_model, load_tokenizer, report
    from sf2t_jax.parallel.mesh import make_mesh, select_devices
    from sf2t_jax.parallel.sharding import named_rules

    out = root / "eval" / stage
    if not redo and (out / "results.json").is_file():
        log.info("eval %s: %s exists (the stage was already trained); kept", stage, out / "results.json")
        return True
    checkpoint = str(root / "stages" / stage / "export")
    mesh = make_mesh(*eval_cfg.mesh.ici, devices=select_devices(int(eval_cfg.mesh.devices)))
    rules = named_rules(eval_cfg.mesh.rules)
    model = load_model(checkpoint, dtype=eval_cfg.dtype, mesh=mesh, rules=rules)
    tokenizer = load_tokenizer(eval_cfg.tokenizer, checkpoint)
    tokenizer.check_model_config(model.config)
    items = load_items(eval_cfg.benchmark)
    run = evaluate(model, items, EvalSettings.of(eval_cfg), tokenizer=tokenizer, video_root=eval_cfg.videos,
                   mesh=mesh, rules=rules)
    report.write_run(run, out, DISPLAY.get(stage, stage), extra_meta={
        "checkpoint": checkpoint, "benchmark": eval_cfg.benchmark, "config": eval_cfg.to_dict()})
    for method, m in run.metrics.items():
        levels = ", ".join(f"{k} {100 * v['value']:.1f}%" for k, v in m["levels"].items())
        log.info("eval %s (%s): overall %.1f%% (%s)", stage, method, 100 * m["overall"]["value"], levels)
    return False


def _headline(metrics: dict) -> dict:
    """{method: {overall, scene, fragment, chain}} accuracies."""
    out = {}
    for method, m in metrics.items():
        out[method] = {"overall": m["overall"]["value"],
                       **{k: v["value"] for k, v in m["levels"].items()},
                       "chain": (m.get("chain") or {}).get("value")}
    return out


def _clips(config) -> int:
    w = config.world
    return int(w.train_clips + w.validation_clips + w.test_clips)


def _estimate_items(config) -> int:
    """Benchmark questions, before the benchmark exists: about 25 per test clip."""
    videos = int(config.world.test_clips)
    if int(config.eval.max_videos):
        videos = min(videos, int(config.eval.max_videos))
    return 25 * videos
