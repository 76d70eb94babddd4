"""FineVidBench evaluation: a jitted, batched scorer, the step-by-step inquiry, metrics, reports.

    items.py      load_items(path): strict benchmark reading (file:line: field errors); select
    inquiry.py    prompts: scene questions and the multi-turn fragment inquiry (own, gold or no history)
    visuals.py    frames per item (speed variants, fragment frame sets), decoded once per video
    batching.py   items -> Prompt -> planned batches -> static-shape packed Batch: questions about
                  the same frames share a row, their common prefix (video, earlier turns) once
    loglik.py     prefill_shared: packed rows with every question's options in one pass ->
                  options' mean NLL, last logits, per-question KV cache views for decoding
    scorer.py     ModelScorer (prefill_shared + greedy decode), plumbing-guard scorers
    extract.py    answer extraction with an explicit unparsable outcome
    metrics.py    grading, per task / speed / category / step, chain, Kendall tau, bootstrap CIs
    report.py     results.json, predictions.jsonl, markdown tables, figures, --compare
    controls.py   static (first frame held) and blind (blank frames) controls: real vs controls,
                  real - static per task with video-clustered CIs, the "uses motion" verdict
    runner.py     evaluate(model, items, settings, ...) -> EvalRun(records, metrics, meta)
    loading.py    load_model(path), load_tokenizer(spec, checkpoint), load_for_job(job, checkpoint)
    config.py     eval_config() defaults and their checked form, EvalSettings
"""
from sf2t_jax.eval.config import EvalSettings, eval_config
from sf2t_jax.eval.items import BenchmarkError, load_items, select
from sf2t_jax.eval.loading import load_model, load_tokenizer
from sf2t_jax.eval.metrics import compute_metrics, kendall_tau, summary
from sf2t_jax.eval.report import compare, write_run
from sf2t_jax.eval.runner import EvalRun, evaluate
from sf2t_jax.eval.scorer import ModelScorer, constant_scorer, oracle_scorer

__all__ = ["EvalSettings", "eval_config", "BenchmarkError", "load_items", "select", "load_model",
           "load_tokenizer", "compute_metrics", "kendall_tau", "summary", "compare", "write_run", "EvalRun",
           "evaluate", "ModelScorer", "constant_scorer", "oracle_scorer"]
