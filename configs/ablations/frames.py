"""Frames per sample: the most frames a fragment shows (tasks' ranges scale with it; the
sequence length grows to fit).

    python launch.py sweep configs/ablations/frames.py --workdir DIR [--dry-run]
"""
import importlib.util
import os

_base = importlib.util.spec_from_file_location("sf2t_base", os.path.join(os.path.dirname(__file__), "..", "sf2t.py"))
sf2t = importlib.util.module_from_spec(_base)
_base.loader.exec_module(sf2t)

FRAMES = (4, 8, 16, 32)


def get_config(arg=None):
    return sf2t.get_config(arg)


def sweep():
    return [{"name": f"frames{n}", "arg": f"frames={n}"} for n in FRAMES]
