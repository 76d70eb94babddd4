"""SFT and SF²T: each alone, one after the other (SFT, then SF²T from its result), and
jointly (one run over a 50/50 mix).

    python launch.py sweep configs/ablations/sft_schedule.py --workdir DIR [--dry-run]

`data.sft_weight` is the share of supervised question-answer samples in the mix (1 = SFT
only). The sequential variant runs two stages into DIR/sequential/{sft,sf2t}; the second
starts from the first's export (its model, LoRA merged) with fresh adapters.
"""
import os

from sf2t_jax.configuration import load_module

sf2t = load_module(os.path.join(os.path.dirname(__file__), "..", "sf2t.py"))


def get_config(arg=None):
    return sf2t.get_config(arg)


def sweep():
    return [
        {"name": "sft", "data.sft_weight": 1.0},
        {"name": "sf2t", "data.sft_weight": 0.0},
        {"name": "sequential", "stages": [
            {"name": "sft", "data.sft_weight": 1.0},
            {"name": "sf2t", "data.sft_weight": 0.0, "init_from": "@previous"},
        ]},
        {"name": "joint", "data.sft_weight": 0.5},
    ]
