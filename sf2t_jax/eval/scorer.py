"""Scorers: what turns a `Batch` into option NLLs and generated tokens.

`ModelScorer` runs the model: one `loglik.prefill_shared` of the batch's packed rows (vision
tower included; prefixes shared by several questions computed once; options scored in the same
pass), then greedy `decode` of at most `batch.new_tokens` on each question's view of the cache
(donated to it). `dispatch` only enqueues work (JAX is asynchronous), so the runner
builds the next batch on the host while the device computes; `fetch` brings a batch's
results back in one transfer.

`constant_scorer` and `oracle_scorer` are plumbing guards with the same interface: a scorer
that always answers one letter must score chance on letter-balanced items, and one fed the
gold answers must score 100%; anything else is a bug between the batch and the metrics.
"""
from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import Mesh

from sf2t_jax.eval.batching import Batch, batch_axes, put_on_mesh
from sf2t_jax.eval.config import EvalSettings
from sf2t_jax.eval.loglik import prefill_shared
from sf2t_jax.finevidbench.schema import LETTERS, Item
from sf2t_jax.models.generate import decode
from sf2t_jax.models.family import row_format
from sf2t_jax.models.qwen2_vl import Qwen2VL  # the base class of every family's model
from sf2t_jax.models.rows import QWEN2_VL_ROWS, RowFormat
from sf2t_jax.text import Tokenizer


class ModelScorer:
    """Scores batches with a model of any family (`models/family.py`; a `Qwen2VL` subclass).

    `row_format` is the family's (`models.family.row_format`): the runner builds every prompt
    with it, so the benchmark reaches the model as training samples do (slices, chat template,
    positions), and decoding stops at its stop tokens.

    Args:
      mesh, rules: when given, batch rows are split over the mesh axes that the rules map
        'batch' to; the model's parameters must already live on `mesh` (e.g.
        `eval.load_model(..., mesh=mesh, rules=rules)`).
    """

    def __init__(self, model: Qwen2VL, settings: EvalSettings, tokenizer: Tokenizer, *,
                 mesh: Mesh | None = None, rules=None):
        self.graphdef, self.state = nnx.split(model)  # once: jit caches key on the graphdef
        self.row_format = row_format(model.config)
        self.settings = settings
        self.eos_ids = jnp.asarray(self.row_format.stop_ids(tokenizer), jnp.int32)
        self.pad_id = jnp.int32(self.row_format.pad_id(tokenizer))
        self.mesh = mesh
        self.axes = batch_axes(mesh, rules or ()) if mesh is not None else ()
        # Activations constrained on the mesh as in training (and fused attention per shard).
        self.layout = (mesh, tuple(rules)) if mesh is not None and rules else None
        # Batch shards: questions and packed rows are split over them.
        self.shards = int(np.prod([mesh.shape[a] for a in self.axes])) if mesh is not None and self.axes else 1
        for field, n in (("batch_size", settings.batch_size), ("rows", settings.rows)):
            if n % self.shards:
                raise ValueError(f"eval config {field}={n} does not divide over the mesh batch axes {self.axes} "
                                 f"({self.shards} shards)")

    def dispatch(self, batch: Batch) -> dict:
        s = self.settings
        x = batch.device_arrays()
        if self.mesh is not None:
            x = put_on_mesh(x, self.mesh, self.axes)
        generate = "generate" in s.methods
        prefill_args = {k: v for k, v in x.items() if k not in ("rope_deltas", "decode_budget")}
        logits, nll, choice, cache = prefill_shared(self.graphdef, self.state, **prefill_args,
                                                    max_new_tokens=batch.new_tokens if generate else None,
                                                    layout=self.layout)
        out = {}
        if "loglik" in s.methods:
            out["nll"], out["choice"] = nll, choice
        if generate:
            out["tokens"], _ = decode(self.graphdef, self.state, logits, cache, x["rope_deltas"], self.eos_ids,
                                      self.pad_id, x["decode_budget"], max_new_tokens=batch.new_tokens,
                                      layout=self.layout)
        return out

    def fetch(self, pending: dict) -> dict:
        """One transfer per batch. With several processes every host builds the same batch and
        gathers the rows the others computed."""
        if jax.process_count() > 1:
            from jax.experimental import multihost_utils

            return jax.tree.map(np.asarray, multihost_utils.process_allgather(pending, tiled=True))
        return jax.device_get(pending)

    @staticmethod
    def jitted() -> dict:
        """The jitted functions a benchmark run calls (for compile counting)."""
        return {"prefill": prefill_shared, "decode": decode}


class AnswerScorer:
    """Answers from the items themselves: `answer(item)` gives a letter or an open answer's
    text, returned as generated tokens and as option NLLs (0 for the letter, 1 elsewhere).
    Prompts are built as for a model of `row_format`'s family (they run no model)."""

    def __init__(self, settings: EvalSettings, tokenizer: Tokenizer, answer: Callable[[Item], str],
                 row_format: RowFormat = QWEN2_VL_ROWS):
        self.settings = settings
        self.tokenizer = tokenizer
        self.answer = answer
        self.row_format = row_format

    def dispatch(self, batch: Batch) -> dict:
        b, k = batch.option_first.shape
        rows = self.row_format
        nll = np.full((b, k), np.inf, np.float32)
        tokens = np.full((b, batch.new_tokens), rows.pad_id(self.tokenizer), np.int32)
        for r, p in enumerate(batch.prompts):
            said = self.answer(p.item)
            if p.item.options and said in LETTERS[:len(p.item.options)]:
                nll[r, :len(p.item.options)] = 1.0
                nll[r, LETTERS.index(said)] = 0.0
            ids = list(rows.answer_ids(self.tokenizer, said))[: batch.new_tokens - 1] + [rows.end_id(self.tokenizer)]
            tokens[r, :len(ids)] = ids
        return {"nll": nll, "choice": np.argmin(nll, axis=1).astype(np.int32), "tokens": tokens}

    def fetch(self, pending: dict) -> dict:
        return pending


def constant_scorer(settings: EvalSettings, tokenizer: Tokenizer, letter: str = "A") -> AnswerScorer:
    """Always the same letter (open items get it too, and are unparsable)."""
    return AnswerScorer(settings, tokenizer, lambda item: letter)


def oracle_scorer(settings: EvalSettings, tokenizer: Tokenizer) -> AnswerScorer:
    """The gold answer: the letter, or the open answer's text."""
    return AnswerScorer(settings, tokenizer, lambda item: item.answer)
