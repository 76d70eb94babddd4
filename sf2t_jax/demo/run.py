"""The embedded demo, top to bottom: data, the four training stages, evaluation, the verdict.

    result = run_demo(DemoSettings.of(load_config("configs/demo.py:scale=small")), "runs/demo")

The run folder (WORKDIR):
    demo.json               the demo config, resolved; seconds per stage; the headline numbers
    demo.log                every log line of the run (training progress, eval progress, ETAs)
    configs/<stage>.json    each stage's resolved training config; configs/eval.json
    stages/tower/           the tower stage: tower.json (settings, loss and accuracy history,
                            probes), probes.md, export/ (random-init LLM + pretrained tower)
    stages/<stage>/         training workdirs: config.json, metrics/*.jsonl, export/ (the model)
    eval/<stage>/           results.json, results.md, predictions.jsonl, tasks.png, speed.png;
                            controls/static/, controls/blind/ (the same, frames held / blank) and
                            controls.md, controls.json, controls.png (real vs controls, "uses motion")
    comparison.md           a "uses motion" table (setting x task: real - static), then the four
                            settings side by side (scene and fragment level, with CIs)
    tasks.png, speed.png    the same as figures
    claims.md, claims.json  the paper's claims, checked with paired bootstrap CIs over videos
    heldout.md              each stage's held-out accuracy on its own tasks vs each task's answer prior

Stages: tower (the vision tower on per-patch object labels) -> base (captions over the frozen
tower) -> sft (scene QA, from base); sf2t (fragments, from base); sft_sf2t (fragments, from sft). Re-running the same command resumes: prepared data is
kept, a finished stage is not trained again, a finished evaluation (or control) is not redone.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from pathlib import Path

from sf2t_jax.configuration import ConfigValueError
from sf2t_jax.demo.claims import check_claims, claims_markdown
from sf2t_jax.demo.progress import Plan, duration
from sf2t_jax.demo.settings import DemoSettings, as_json_dict
from sf2t_jax.eval.config import METHODS, EvalJob

log = logging.getLogger("sf2t_jax.demo")

# The paper's names of the four settings, in table order.
DISPLAY = {"base": "Base", "sft": "SFT", "sf2t": "SF²T", "sft_sf2t": "SFT+SF²T", "sf2t_joint": "SFT+SF²T joint"}
# A-priori costs (the ETA before anything is measured), from the small demo's demo.json on a
# quiet 2-core AMD EPYC (2026-12-06: 10m04s in all); a slower machine of the same kind took 1.7x
# as long, and the ETA rescales by the measured speed once a stage has finished.
COMPILE_S = 5.0
STEP_S = {"captions": 0.05, "scene_qa": 0.08, "fragments": 0.065}
QUESTION_S = 0.009  # per benchmark question and view (real, static, blind)
PREPARE_S_PER_CLIP = 0.02
TOWER_S_PER_CLIP = 0.008  # decoding clips and rasterising their labels
TOWER_STEP_S = 0.012


@dataclasses.dataclass
class DemoResult:
    """workdir: the run folder; seconds: wall time per stage; metrics: {setting: metrics};
    claims: check_claims' records; controls: {setting: controls.compare_views' table} ({} without
    controls)."""

    workdir: str
    seconds: dict
    metrics: dict
    claims: list
    controls: dict = dataclasses.field(default_factory=dict)


def run_demo(settings: DemoSettings, workdir: str, *, progress: bool = True) -> DemoResult:
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
        return _run(settings, root, progress)
    finally:
        top.removeHandler(handler)
        top.setLevel(level)
        handler.close()


def _run(settings: DemoSettings, root: Path, progress: bool) -> DemoResult:
    from sf2t_jax.prepare import prepare

    order = list(settings.order)
    data_dir = settings.prepare.data_dir
    bench_items = _estimate_items(settings)
    views = settings.eval.settings.controls
    evals = []
    for s in order:  # each stage's evaluation, then its controls (compiled already: same shapes)
        evals.append((f"eval {s}", COMPILE_S + QUESTION_S * bench_items))
        if views:
            evals.append((f"controls {s}", len(views) * QUESTION_S * bench_items))
    tower_steps = settings.tower.steps
    w = settings.prepare.world
    clips = w.train_clips + w.validation_clips + w.test_clips
    plan = Plan([("prepare", PREPARE_S_PER_CLIP * clips)]
                + ([("tower", COMPILE_S + TOWER_S_PER_CLIP * clips + TOWER_STEP_S * tower_steps)]
                   if tower_steps else [])
                + [(f"train {s}", COMPILE_S + STEP_S[settings.stages[s].mode] * settings.stages[s].steps) for s in order]
                + evals + [("compare", 5.0)])
    log.info("demo: scale %s, seed %d, stages %s, run folder %s", settings.scale, settings.seed,
             " -> ".join((["tower"] if tower_steps else []) + order), root)

    # ================================================================================
    # 1. Data: the synthetic world, sf2t_corpus, video_sft, FineVidBench (kept if done)
    # ================================================================================
    plan.banner("prepare")
    t0 = time.perf_counter()
    prepared = prepare(settings.prepare, progress=progress)
    log.info("data:\n%s", prepared.report())
    plan.finish("prepare", time.perf_counter() - t0,
                skipped=all(v == "up to date" for v in prepared.datasets.values()))
    job = settings.eval
    benchmark = job.benchmark
    if not os.path.isfile(benchmark):
        raise FileNotFoundError(f"demo: prepare wrote no benchmark at {benchmark}")

    # ================================================================================
    # 2. The tower stage: the vision tower on the world's per-frame object labels
    # ================================================================================
    if tower_steps:
        plan.banner("tower")
        t0 = time.perf_counter()
        kept = _tower_stage(settings, root, prepared.world.root if prepared.world else None)
        plan.finish("tower", time.perf_counter() - t0, skipped=kept)

    # ================================================================================
    # 3-6. Training: base (captions) -> SFT (scene QA); SF²T (fragments) from base and from SFT
    # ================================================================================
    completed_before = {}
    for stage in order:
        plan.banner(f"train {stage}")
        t0 = time.perf_counter()
        completed_before[stage] = _train_stage(settings, stage, root)
        plan.finish(f"train {stage}", time.perf_counter() - t0, skipped=completed_before[stage])

    # ================================================================================
    # 7. Evaluation of every setting on the benchmark, and its controls (static, blind)
    # ================================================================================
    (root / "configs" / "eval.json").write_text(json.dumps(job.resolved, indent=2, default=str))
    from sf2t_jax.eval import controls

    control_tables = {}
    for stage in order:
        scorer = _StageScorer(job, root, stage)
        redo = not completed_before[stage]
        plan.banner(f"eval {stage}")
        t0 = time.perf_counter()
        kept = _evaluate_stage(scorer, "real", redo=redo)
        plan.finish(f"eval {stage}", time.perf_counter() - t0, skipped=kept)
        if views:
            plan.banner(f"controls {stage}")
            t0 = time.perf_counter()
            kept = all([_evaluate_stage(scorer, view, redo=redo) for view in views])
            e = job.settings
            table = controls.report_from_dirs(scorer.out, DISPLAY.get(stage, stage), views,
                                              resamples=e.bootstrap, ci=e.ci, seed=e.seed)
            controls.log_table(table, prefix=f"controls {stage}")
            control_tables[DISPLAY.get(stage, stage)] = table
            plan.finish(f"controls {stage}", time.perf_counter() - t0, skipped=kept)

    # ================================================================================
    # The table, the figures, the claims
    # ================================================================================
    plan.banner("compare")
    t0 = time.perf_counter()
    from sf2t_jax.eval import report

    shown = order  # Base, SFT, SF²T, SFT+SF²T
    report.compare([root / "eval" / s for s in shown], root, [DISPLAY.get(s, s) for s in shown],
                   preamble=controls.motion_markdown(control_tables) if control_tables else "")
    heldout = _heldout_table(root, shown)
    if heldout:
        (root / "heldout.md").write_text(heldout)
        log.info("held-out accuracy of each stage on its own tasks (stages/<stage>/heldout.json):\n%s", heldout)
    claims = check_claims({DISPLAY.get(s, s): root / "eval" / s for s in shown},
                          methods=tuple(m for m in METHODS if m in job.settings.methods),
                          bootstrap=job.settings.bootstrap, seed=settings.seed)
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
        "config": settings.resolved, "seconds": seconds, "found_done": found_done,
        "seconds_when_computed": {**seconds, **seconds_first},  # per stage; "total" is this session's
        "data": str(data_dir), "benchmark": benchmark,
        "headline": {name: _headline(m, control_tables.get(name)) for name, m in metrics.items()}},
        indent=1, default=str))
    log.info("demo: finished in %s; table %s, claims %s", duration(seconds["total"]), root / "comparison.md",
             root / "claims.md")
    for c in claims:
        log.info("claim: %-40s %-8s %s %.1f vs %s %.1f -> %s", c["claim"], c["method"], c["better"],
                 100 * c["accuracy"][c["better"]], c["worse"], 100 * c["accuracy"][c["worse"]], c["verdict"])
    return DemoResult(str(root), seconds, metrics, claims, control_tables)


# ----------------------------------------------------------------------------------------
# Stages
# ----------------------------------------------------------------------------------------
def _tower_stage(settings: DemoSettings, root: Path, world_root: Path | None) -> bool:
    """Pretrains the vision tower (sf2t_jax/demo/tower.py) and writes stages/tower/ (tower.json,
    probes.md, then export/: a directory with config.json is complete); True if it was done."""
    from flax import nnx

    from sf2t_jax.convert.native import save_native
    from sf2t_jax.demo import tower, tower_data
    from sf2t_jax.models.config import preset
    from sf2t_jax.models.layers import Numerics
    from sf2t_jax.models.qwen2_vl import Qwen2VL
    from sf2t_jax.train.model import DTYPES
    from sf2t_jax.fileio import atomic_write_json

    out = root / "stages" / "tower"
    if (out / "export" / "config.json").is_file():
        log.info("tower: %s exists; kept", out / "export")
        return True
    if world_root is None:
        raise ConfigValueError("demo: the tower stage learns from the synthetic world's ground truth (tracks/), "
                               "which an external --source lacks; set --config.tower.steps=0 and "
                               "--config.stages.base.init=\"\"")
    t, seed = settings.tower, settings.seed
    size = settings.model.resolution
    pairs = dict(gaps=t.gaps, min_cover=float(t.min_cover))
    fit = tower_data.load_pairs(world_root, "train", size, pairs_per_clip=t.pairs_per_clip, seed=seed, **pairs)
    heldout = tower_data.load_pairs(world_root, "validation", size, pairs_per_clip=t.heldout_pairs_per_clip,
                                    seed=seed + 1, **pairs)
    # The base stage's model, as its random init would build it (train/model.py's builder, method full).
    dtype = DTYPES[settings.model.dtype]
    model = Qwen2VL(preset(settings.model.name), Numerics(dtype=dtype), rngs=nnx.Rngs(params=seed, dropout=seed + 1))
    random_tower = nnx.clone(model.visual)
    training = tower.TowerSettings(steps=t.steps, batch=t.batch, lr=float(t.lr), seed=seed)
    history = tower.pretrain_tower(model.visual, fit, training, heldout=heldout)
    probes = tower.probe_tower({"pretrained": model.visual, "random init": random_tower}, fit, heldout)
    table = tower.probes_markdown(probes)
    log.info("tower probes (ridge on merged tokens, fitted on %d training pairs, scored on %d held-out pairs):\n%s",
             len(fit), len(heldout), table)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "tower.json", {"settings": dataclasses.asdict(training), "config": settings.resolved["tower"],
                                           "pairs": {"train": len(fit), "heldout": len(heldout)},
                                           "history": history, "probes": probes}, indent=1)
    (out / "probes.md").write_text("# Probes of the tower (ridge on merged tokens, held-out clips)\n\n" + table)
    save_native(model, str(out / "export"))
    return False


def _train_stage(settings: DemoSettings, stage: str, root: Path) -> bool:
    """Trains `stage` (resuming a finished or interrupted workdir); True if it was already complete."""
    from sf2t_jax.train.loop import train

    init = settings.stages[stage].init
    init_from = str(root / "stages" / init / "export") if init else ""  # "tower" too: stages/tower/export
    cfg = settings.stage_config(stage, init_from=init_from)
    (root / "configs" / f"{stage}.json").write_text(json.dumps(as_json_dict(cfg), indent=2, default=str))
    result = train(cfg, str(root / "stages" / stage))
    if result.status not in ("completed", "already_complete"):
        raise RuntimeError(f"demo: stage {stage} ended {result.status!r} at step {result.step} of "
                           f"{result.total_steps}; run the same command again to resume")
    if result.history:
        first, last = result.history[0], result.history[-1]
        log.info("%s: loss %.3f -> %.3f, token accuracy %.3f -> %.3f over %d steps", stage, first["loss"],
                 last["loss"], first["accuracy"], last["accuracy"], result.step)
    return result.status == "already_complete"


class _StageScorer:
    """A stage's export and the benchmark, loaded on first use: a resumed run that keeps every
    result loads nothing; the real run and the controls share one loaded model."""

    def __init__(self, job: EvalJob, root: Path, stage: str):
        self.job, self.stage = job, stage
        self.name = DISPLAY.get(stage, stage)
        self.out = root / "eval" / stage
        self.checkpoint = str(root / "stages" / stage / "export")
        self._loaded = None

    def evaluate(self, view: str):
        from sf2t_jax.eval import evaluate, load_items
        from sf2t_jax.eval.loading import load_for_job

        job = self.job
        if self._loaded is None:
            model, tokenizer, mesh, rules = load_for_job(job, self.checkpoint)
            self._loaded = dict(model=model, tokenizer=tokenizer, items=load_items(job.benchmark), mesh=mesh, rules=rules)
        x = self._loaded
        return evaluate(x["model"], x["items"], job.settings, tokenizer=x["tokenizer"], video_root=job.videos,
                        mesh=x["mesh"], rules=x["rules"], view=view)


def _evaluate_stage(scorer: _StageScorer, view: str, *, redo: bool) -> bool:
    """Scores the stage's export on the benchmark as `view` shows it (the real run, or a control
    into eval/<stage>/controls/<view>/); True if an earlier result was kept."""
    from sf2t_jax.eval import controls, report

    out = scorer.out if view == "real" else controls.control_dir(scorer.out, view)
    what = "eval" if view == "real" else f"{view} control"
    if not redo and (out / "results.json").is_file():
        log.info("%s %s: %s exists (the stage was already trained); kept", what, scorer.stage, out / "results.json")
        return True
    run = scorer.evaluate(view)
    name = scorer.name if view == "real" else f"{scorer.name} ({view})"
    report.write_run(run, out, name, extra_meta={
        "checkpoint": scorer.checkpoint, "benchmark": scorer.job.benchmark, "config": scorer.job.resolved})
    for method, m in run.metrics.items():
        levels = ", ".join(f"{k} {100 * v['value']:.1f}%" for k, v in m["levels"].items())
        log.info("%s %s (%s): overall %.1f%% (%s)", what, scorer.stage, method, 100 * m["overall"]["value"], levels)
    return False


def _heldout_table(root: Path, stages: list[str]) -> str:
    """A markdown table of each stage's last held-out evaluation (train/heldout.py): per task,
    accuracy with its video-bootstrap interval, the training majority's accuracy on the same
    samples (the prior), the samples' own majority's (the best constant), whether the interval is
    above both, the answers the model gave most (a model stuck on one answer shows it), and
    accuracy and the best constant by frames shown for tasks whose frame count varies. "" when
    no stage has one."""
    from sf2t_jax.train.heldout import read_last

    rows, per_frames = [], []
    for stage in stages:
        record = read_last(str(root / "stages" / stage))
        for task, r in ((record or {}).get("tasks") or {}).items():
            prior = r.get("prior") or {}
            lo, hi = r["ci"]
            shown = "-" if r["accuracy"] is None else f"{100 * r['accuracy']:.1f} [{100 * lo:.1f}, {100 * hi:.1f}]"
            prior_text, best_text = (_constant_text(prior), _constant_text(r.get("best_constant") or {}))
            verdict = {True: "yes", False: "no", None: "-"}[r["above_prior"]]
            given = ", ".join(f"{answer[:16]!r} {count}" for answer, count in list(r.get("answers_given", {}).items())[:3])
            rows.append(f"| {DISPLAY.get(stage, stage)} | {task} | {r['n']} ({r['videos']} videos) | {shown} | "
                        f"{prior_text} | {best_text} | {verdict} | {given or '-'} |")
            by_frames = r.get("by_frames") or {}
            if len(by_frames) > 1:
                cells = ", ".join(f"{k}: {100 * v['accuracy']:.1f} ({v['n']}{_constant_suffix(v.get('best_constant'))})"
                                  for k, v in by_frames.items())
                per_frames.append(f"- {DISPLAY.get(stage, stage)}, {task}: {cells}")
    if not rows:
        return ""
    table = ("| stage | task | held-out samples | accuracy [95% CI] | prior: training majority | best constant "
             "on these samples | above both | answered most |\n|---|---|---|---|---|---|---|---|\n" + "\n".join(rows) + "\n")
    if not per_frames:
        return table
    return (table + "\nAccuracy by frames shown (frames: accuracy (samples, best constant on them)):\n\n"
            + "\n".join(per_frames) + "\n")


def _constant_suffix(share: float | None) -> str:
    """', 27.0' for a share, '' for None (a record written before by-frames constants)."""
    return "" if share is None else f", {100 * share:.1f}"


def _constant_text(constant: dict) -> str:
    """'5.8 ('2, 3, 1')': a constant answer's accuracy on the held-out samples, or '-'."""
    if constant.get("accuracy") is None:
        return "-"
    return f"{100 * constant['accuracy']:.1f} ({constant['answer'][:24]!r})"


def _headline(metrics: dict, table: dict | None) -> dict:
    """{method: {overall, scene, fragment, chain, static: {overall, scene, fragment}, blind: ...,
    real_minus_static: overall}} accuracies (the controls' when they ran)."""
    out = {}
    for method, m in metrics.items():
        out[method] = {"overall": m["overall"]["value"],
                       **{k: v["value"] for k, v in m["levels"].items()},
                       "chain": (m.get("chain") or {}).get("value")}
        rows = (table or {}).get("methods", {}).get(method, [])
        for view in (table or {}).get("views", [])[1:]:
            out[method][view] = {r["key"]: r[view]["value"] for r in rows if r["kind"] != "task"}
        overall = next((r for r in rows if r["kind"] == "overall"), None)
        if overall and "real_minus_static" in overall:
            out[method]["real_minus_static"] = overall["real_minus_static"]["value"]
    return out


def _estimate_items(settings: DemoSettings) -> int:
    """Benchmark questions, before the benchmark exists: about 25 per test clip."""
    videos = settings.prepare.world.test_clips
    if settings.eval.settings.max_videos:
        videos = min(videos, settings.eval.settings.max_videos)
    return 25 * videos
