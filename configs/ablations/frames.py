"""Frames per sample: the most frames a fragment shows (tasks' ranges scale with it; the
sequence length grows to fit).

    python launch.py sweep configs/ablations/frames.py --workdir DIR [--dry-run]
"""
import os

from sf2t_jax.configuration import load_module

sf2t = load_module(os.path.join(os.path.dirname(__file__), "..", "sf2t.py"))

FRAMES = (4, 8, 16, 32)


def get_config(arg=None):
    return sf2t.get_config(arg)


def sweep():
    return [{"name": f"frames{n}", "arg": f"frames={n}"} for n in FRAMES]
