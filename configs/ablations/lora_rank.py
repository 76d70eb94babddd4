"""LoRA rank, with alpha = 2 x rank so the update's scale (alpha / rank = 2) stays the
recipe's (rank 16, alpha 32).

    python launch.py sweep configs/ablations/lora_rank.py --workdir DIR [--dry-run]
"""
import os

from sf2t_jax.configuration import load_module

sf2t = load_module(os.path.join(os.path.dirname(__file__), "..", "sf2t.py"))

RANKS = (4, 8, 16, 32, 64)


def get_config(arg=None):
    return sf2t.get_config(arg)


def sweep():
    return [{"name": f"rank{r}", "lora.rank": r, "lora.alpha": 2.0 * r} for r in RANKS]
