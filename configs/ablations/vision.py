"""Which parts of the vision side train: the recipe (ViT frozen, merger trained), everything
visual frozen, or the ViT and the merger trained too (fully, next to the LLM's LoRA).

    python launch.py sweep configs/ablations/vision.py --workdir DIR [--dry-run]
"""
import os

from sf2t_jax.configuration import load_module

sf2t = load_module(os.path.join(os.path.dirname(__file__), "..", "sf2t.py"))

VISUAL = r"^visual\."


def get_config(arg=None):
    return sf2t.get_config(arg)


def sweep():
    return [
        {"name": "vit_frozen_merger_trained", "params.frozen": (sf2t.VISION_TOWER,), "params.extra_trainable": (sf2t.MERGER,)},
        {"name": "vision_frozen", "params.frozen": (VISUAL,), "params.extra_trainable": ()},
        {"name": "vision_trained", "params.frozen": (), "params.extra_trainable": (VISUAL,)},
    ]
