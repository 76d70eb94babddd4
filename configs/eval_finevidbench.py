"""FineVidBench evaluation of one checkpoint (specs/sf2t.md §3).

    python launch.py eval --config configs/eval_finevidbench.py --checkpoint CKPT --out DIR \
        --config.benchmark=DATA/finevidbench/finevidbench_test.jsonl --config.videos=DATA/world
    python launch.py eval --config configs/eval_finevidbench.py:benchmark=B.jsonl,videos=ROOT ...
    python launch.py eval --compare DIR_BASE DIR_SFT DIR_SF2T --out DIR      # one table, one figure

Every field is documented in sf2t_jax/eval/config.py. For Qwen2-VL-7B on a TPU/GPU, e.g.
--config.dtype=bfloat16 --config.batch_size=16 --config.video.size='(336, 336)'.
"""
from sf2t_jax.configuration import parse_arg
from sf2t_jax.eval.config import eval_config


def get_config(arg=None):
    arg = parse_arg(arg, benchmark="", videos="", tokenizer="")
    c = eval_config()
    c.benchmark, c.videos, c.tokenizer = arg.benchmark, arg.videos, arg.tokenizer
    return c
