"""Held-out accuracy per task against each task's answer prior, during training.

Every `heldout.every` steps (and at the last step) the trainer scores a fixed set of held-out
samples per task (`input/heldout.py`: the training sampler on the held-out split) with one
teacher-forced forward pass per batch: a sample is right when the argmax at every answer
position (its answer tokens and the closing <|im_end|>) is the answer's token, i.e. greedy
decoding would write exactly the answer. The forward is the train step's (`step.forward_hidden`
and the model's LM head at the answer positions only), jitted once on the training mesh with
the training batch shapes, so a pass costs a few forward steps.

Per task: accuracy, a percentile bootstrap interval resampling videos (`eval/bootstrap.py`),
the answer prior (the training split's most frequent answer, `input/heldout.py`, scored on the
same samples), the best constant on these samples (their own most frequent answer: where many
answers are near-tied, as rearrangement's permutations, it scores above the training majority),
and accuracy by the number of frames shown, each with its own best constant. "Above prior" only
when the interval's lower end exceeds both constants, so no constant answer, however chosen,
passes.

    WORKDIR/metrics/heldout.jsonl   one record per evaluation (see `HeldoutEvaluator.evaluate`)
    WORKDIR/heldout.json            the last record

A resumed session first drops the records of steps after its checkpoint (a killed session may
have evaluated them; resume recomputes them bit for bit), so no step is recorded twice.
"""
from __future__ import annotations

import collections
import contextlib
import json
import logging
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from etils import epath
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec

from sf2t_jax.eval.bootstrap import interval
from sf2t_jax.batch import META_KEYS
from sf2t_jax.experiment import Experiment, HeldoutSettings
from sf2t_jax.input.batching import collate
from sf2t_jax.input.heldout import HeldoutSet, majority_answer
from sf2t_jax.models.lora import LoRALinear
from sf2t_jax.parallel.activations import activation_sharding
from sf2t_jax.train import data as data_lib
from sf2t_jax.train.loss import gather_targets, shifted_targets
from sf2t_jax.train.step import forward_hidden, target_weights

log = logging.getLogger(__name__)

RECORDS = "metrics/heldout.jsonl"
LAST = "heldout.json"


def make_answer_scorer(parts, grid_hw: tuple[int, int], max_targets: int, *, param_shardings, frozen_shardings,
                       extra_shardings, batch_shardings: dict[str, NamedSharding], rules):
    """The jitted `(params, frozen, extra, batch) -> {"correct", "targets", "nll", "argmax"}`
    replicated: per row (B,), whether every answer token of the row is the argmax, its answer
    tokens, and the sum of their negative log-likelihoods; "argmax" (B, max_targets) the argmax
    token at each answer position (teacher-forced; -1 past the answer). The LM head runs at each row's first `max_targets`
    answer positions only (`loss.gather_targets`); no held-out row has more. Dropout is off."""
    mesh = next(iter(batch_shardings.values())).mesh

    def score(params, frozen, extra, batch):
        model = parts.merge(params, frozen, extra)
        for _, module in nnx.iter_graph(model):
            if isinstance(module, LoRALinear):
                module.lora_rng = None  # scoring is deterministic: no adapter dropout
        with activation_sharding(mesh, rules) if rules is not None else contextlib.nullcontext():
            hidden = forward_hidden(model, batch, grid_hw)
        targets, _ = shifted_targets(batch["input_ids"], batch["loss_mask"])
        hidden, targets, weights, _ = gather_targets(hidden[:, :-1], targets, target_weights(batch), max_targets)
        logits = model.logits(hidden).astype(jnp.float32)  # (B, K, V)
        on = weights > 0
        hit = (jnp.argmax(logits, axis=-1) == targets) | ~on
        count = jnp.sum(on, axis=1)
        nll = optax.softmax_cross_entropy_with_integer_labels(logits, targets)
        return {"correct": jnp.all(hit, axis=1) & (count > 0), "targets": count,
                "nll": jnp.sum(jnp.where(on, nll, 0.0), axis=1),
                "argmax": jnp.where(on, jnp.argmax(logits, axis=-1), -1)}

    return jax.jit(score, in_shardings=(param_shardings, frozen_shardings, extra_shardings, batch_shardings),
                   out_shardings=NamedSharding(mesh, PartitionSpec()))


def task_report(correct: np.ndarray, answers: list[str], videos: list[str], prior, *, resamples: int, ci: float,
                seed: int, frames: list[int] | None = None) -> dict[str, Any]:
    """One task's entry: accuracy, its video-bootstrap interval, the prior, the best constant
    on these samples, whether the interval's lower end is above both, and (given `frames`, the
    frames each sample shows) accuracy and the best constant by frames shown. `correct` (n,)
    bool; `answers`, `videos` per sample."""
    n = len(correct)
    lo_hi = interval(correct.astype(np.float64), videos, resamples=resamples, ci=ci, rng=np.random.default_rng(seed))
    out: dict[str, Any] = {"n": n, "correct": int(correct.sum()), "accuracy": float(correct.mean()) if n else None,
                           "ci": lo_hi, "videos": len(set(videos))}
    if frames is not None:
        frames = np.asarray(frames)
        out["by_frames"] = {str(k): _subset_report(correct[frames == k], [a for a, f in zip(answers, frames) if f == k])
                            for k in np.unique(frames)}
    if prior is None:
        out.update(prior=None, best_constant=None, above_prior=None)
        return out
    prior_acc = float(np.mean([a == prior.answer for a in answers])) if n else None
    out["prior"] = {"answer": prior.answer, "accuracy": prior_acc, "train_share": prior.count / prior.drawn,
                    "train_samples": prior.drawn}
    # The samples' own majority scores at least as well on them as any constant, the prior
    # included, so clearing it clears both.
    best = majority_answer(answers) if n else None
    out["best_constant"] = None if best is None else {"answer": best.answer, "accuracy": best.count / n}
    out["above_prior"] = bool(lo_hi[0] is not None and best is not None and lo_hi[0] > best.count / n)
    return out


def _subset_report(correct: np.ndarray, answers: list[str]) -> dict[str, Any]:
    """Accuracy on a non-empty subset of a task's samples and the best constant's on it (the
    subset's own most frequent answer): at three frames a rearrangement model can beat the
    whole task's constant and still score what one permutation would."""
    return {"n": len(answers), "accuracy": float(correct.mean()),
            "best_constant": majority_answer(answers).count / len(answers)}


OTHER_ANSWER = "(other)"  # `answers_given`: argmax tokens that spell none of the task's gold answers
TOP_ANSWERS = 5


def answers_given(argmax: list[tuple[int, ...]], gold: list[tuple[int, ...]], answers: list[str]) -> dict[str, int]:
    """What a task's samples were answered with: {answer text: samples}, the `TOP_ANSWERS` most
    frequent; a constant-answer model shows as one key.

    Teacher-forced argmax tokens say exactly what greedy decoding writes up to and including its
    first token that differs from the gold answer (the prompt and earlier tokens are the same),
    nothing after it. A sample is named by the one gold answer of the task that starts with
    that known prefix; `OTHER_ANSWER` when none or several do. `argmax` and `gold` hold each
    sample's tokens at its answer positions, `answers` its gold text."""
    known = dict(zip(gold, answers))

    def name(predicted: tuple[int, ...], truth: tuple[int, ...]) -> str:
        wrong = next((i for i, (p, t) in enumerate(zip(predicted, truth)) if p != t), None)
        if wrong is None:
            return known[truth]
        prefix = truth[:wrong] + (predicted[wrong],)
        matches = [text for tokens, text in known.items() if tokens[:wrong + 1] == prefix]
        return matches[0] if len(matches) == 1 else OTHER_ANSWER

    counts = collections.Counter(name(p, t) for p, t in zip(argmax, gold))
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_ANSWERS])


def _answer_tokens(example: dict[str, np.ndarray]) -> tuple[int, ...]:
    """The answer's token ids of a collated example: the targets the loss mask selects."""
    ids, mask = np.asarray(example["input_ids"]), np.asarray(example["loss_mask"])
    return tuple(int(t) for t in ids[1:][mask[1:] > 0])


def _fmt(x) -> str:
    return "?" if x is None else f"{x:.3f}".lstrip("0") if x < 1 else f"{x:.2f}"


def describe(record: dict[str, Any]) -> str:
    """The one log line of an evaluation: 'count .625 [.480, .750] vs prior .333 ABOVE; ...',
    with ', best constant .400' where the held-out samples' own majority scores higher."""
    parts = []
    for task, r in record["tasks"].items():
        prior = r["prior"]["accuracy"] if r["prior"] else None
        best = (r.get("best_constant") or {}).get("accuracy")
        stricter = f", best constant {_fmt(best)}" if best is not None and prior is not None and best > prior else ""
        verdict = "ABOVE" if r["above_prior"] else "not above"
        parts.append(f"{task} {_fmt(r['accuracy'])} [{_fmt(r['ci'][0])}, {_fmt(r['ci'][1])}] vs prior "
                     f"{_fmt(prior)}{stricter} {verdict} (n={r['n']})")
    return "; ".join(parts)


class HeldoutEvaluator:
    """Scores the held-out set at due steps, logs one line, appends the record (process 0).

    Args:
      settings: the `heldout` section.
      heldout: the fixed samples and priors (`input.heldout.draw_heldout`; the same on every
        process).
      geometry: the training batches' shapes (held-out batches have them too).
      scorer: `make_answer_scorer`'s jitted function.
      batch_shardings: the training batch shardings.
      first_step: the step this session starts at (records after it are dropped).
      seed: seeds the bootstrap (task i: seed + i), so a recomputed record is the same.
    """

    def __init__(self, settings: HeldoutSettings, heldout: HeldoutSet, geometry: data_lib.BatchGeometry, scorer,
                 batch_shardings, *, workdir: str, first_step: int, total_steps: int, seed: int):
        self.settings, self.heldout, self.geometry = settings, heldout, geometry
        self.scorer, self.batch_shardings, self.spec = scorer, batch_shardings, heldout.spec
        self.total, self.seed = total_steps, seed
        self.primary = jax.process_index() == 0
        self.records_path = epath.Path(workdir) / RECORDS
        self.last_path = epath.Path(workdir) / LAST
        self.records = self._kept_records(first_step)
        self.last: dict[str, Any] | None = self.records[-1] if self.records else None
        self._host_batches = self._batches()
        self._gold_tokens = [_answer_tokens(s.example) for s in heldout.samples]

    # ---- resume: the records of this lineage up to the checkpoint's step ------------------
    def _kept_records(self, first_step: int) -> list[dict[str, Any]]:
        if not self.records_path.exists():
            return []
        records = [json.loads(line) for line in self.records_path.read_text().splitlines() if line.strip()]
        kept = [r for r in records if r["step"] <= first_step]
        if len(kept) < len(records) and self.primary:
            log.info("held-out: dropping %d record(s) after step %d (this session recomputes them)",
                     len(records) - len(kept), first_step)
            self._write(kept)
        return kept

    def _write(self, records: list[dict[str, Any]]) -> None:
        self.records_path.parent.mkdir(parents=True, exist_ok=True)
        self.records_path.write_text("".join(json.dumps(r) + "\n" for r in records))
        if records:
            self.last_path.write_text(json.dumps(records[-1], indent=1))

    # ---- batches ---------------------------------------------------------------------------
    def _batches(self) -> list[dict[str, np.ndarray]]:
        """This process's rows of each global held-out batch (B rows, the last padded with
        valid=0 rows): global row r of batch k is sample k*B + r."""
        examples = [s.example for s in self.heldout.samples]
        b_global, b_local = self.geometry.batch_size, self.spec.batch_size
        start = jax.process_index() * b_local
        out = []
        for k in range(0, len(examples), b_global):
            rows = examples[k:k + b_global][start:start + b_local]
            if rows:
                batch = collate(rows, self.spec)
            else:  # this process has no sample in the last batch: an all-padding share
                batch = collate(examples[:1], self.spec)
                batch["valid"][:] = 0
            for key in META_KEYS:
                batch.pop(key)
            out.append(batch)
        return out

    # ---- evaluation ------------------------------------------------------------------------
    def due(self, step: int) -> bool:
        every = self.settings.every
        return step == self.total or (every > 0 and step % every == 0)

    def evaluate(self, step: int, state, extra) -> dict[str, Any]:
        """Scores every held-out sample with `state`'s parameters; returns (and, on process 0,
        logs and writes) the record: {"step", "split", "seconds", "tasks": {task: {"n",
        "correct", "accuracy", "ci", "videos", "prior": {"answer", "accuracy", "train_share",
        "train_samples"}, "above_prior", "answers_given", "skipped"}}, "ci_level", "resamples", "draws", "skips": the
        held-out and prior draws' `SkipCounter.state()`}."""
        t0 = time.time()
        outputs = []
        for host in self._host_batches:
            batch = data_lib.GlobalBatches(iter([host]), self.geometry, self.batch_shardings)
            outputs.append(self.scorer(state.params, state.frozen, extra, next(batch)))
        fetched = jax.device_get(outputs)
        n = len(self.heldout.samples)
        correct = np.concatenate([np.asarray(o["correct"]) for o in fetched])[:n]
        argmax = np.concatenate([np.asarray(o["argmax"]) for o in fetched])[:n]
        record = {"step": int(step), "split": self.heldout.split, "seconds": 0.0,
                  "ci_level": self.settings.ci, "resamples": self.settings.resamples, "draws": self.heldout.draws,
                  "tasks": {}, "skips": self.heldout.skips}
        held_skips = self.heldout.skips["heldout"]["by_task"]
        for i, task in enumerate(self.heldout.tasks):
            idx = self.heldout.indices(task)
            entry = task_report(correct[idx], [self.heldout.samples[j].sample.answer for j in idx],
                                [self.heldout.samples[j].id for j in idx], self.heldout.priors.get(task),
                                resamples=self.settings.resamples, ci=self.settings.ci, seed=self.seed + i,
                                frames=[len(self.heldout.samples[j].sample.frames) for j in idx])
            gold = [self._gold_tokens[j] for j in idx]
            entry["answers_given"] = answers_given([tuple(int(t) for t in argmax[j][:len(g)]) for j, g in zip(idx, gold)],
                                                   gold, [self.heldout.samples[j].sample.answer for j in idx])
            entry["skipped"] = held_skips.get(task, {})
            record["tasks"][task] = entry
        record["seconds"] = round(time.time() - t0, 3)
        self.last = record
        if self.primary:
            self.records.append(record)
            self._write(self.records)
            log.info("held-out step %d/%d (%s, %.1fs): %s", step, self.total, self.heldout.split, record["seconds"],
                     describe(record))
        return record


def open_heldout(config: Experiment, rows=None) -> HeldoutSet | None:
    """The held-out set `config.heldout` asks for (None when `heldout.split` is ''), drawn by
    the trainer's pipeline config (SFT mix included) on every process alike, as the model
    family's rows (`models.family.row_format`; None: Qwen2-VL's)."""
    settings = config.heldout
    if not settings.enabled:
        return None
    from sf2t_jax.input.heldout import draw_heldout

    return draw_heldout(config.input, split=settings.split, per_task=settings.samples_per_task,
                        prior_per_task=settings.prior_samples_per_task, process_index=jax.process_index(),
                        process_count=jax.process_count(), rows=rows)


def make_evaluator(config: Experiment, heldout: HeldoutSet, model, built, geometry: data_lib.BatchGeometry, *, workdir: str,
                   first_step: int, total_steps: int) -> HeldoutEvaluator:
    """The evaluator over the trainer's model setup (`setup.ModelSetup`) and step shardings
    (`setup.StepSetup`): the scorer is jitted with the state's parameter shardings."""
    max_targets = max(int(np.asarray(s.example["loss_mask"])[1:].sum()) for s in heldout.samples)
    scorer = make_answer_scorer(model.parts, geometry.grid_hw, max_targets,
                                param_shardings=built.state_shardings.params,
                                frozen_shardings=built.state_shardings.frozen,
                                extra_shardings=model.parts.shardings["extra"], batch_shardings=built.batch_shardings,
                                rules=model.rules if config.mesh.constrain_activations else None)
    return HeldoutEvaluator(config.heldout, heldout, geometry, scorer, built.batch_shardings,
                            workdir=workdir, first_step=first_step, total_steps=total_steps,
                            seed=config.input.seed)


def read_last(workdir: str) -> dict[str, Any] | None:
    """WORKDIR/heldout.json, or None."""
    path = epath.Path(workdir) / LAST
    return json.loads(path.read_text()) if path.exists() else None
