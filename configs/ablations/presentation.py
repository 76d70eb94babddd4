"""Presentation: the fragment frames as one video (Qwen2-VL merges frame pairs) or as one
image per frame (twice the vision tokens; max_length grows to fit).

    python launch.py sweep configs/ablations/presentation.py --workdir DIR [--dry-run]
"""
import os

from sf2t_jax.configuration import load_module

sf2t = load_module(os.path.join(os.path.dirname(__file__), "..", "sf2t.py"))


def get_config(arg=None):
    return sf2t.get_config(arg)


def sweep():
    return [{"name": "video", "arg": "present=video"}, {"name": "images", "arg": "present=images"}]
