"""Presentation: the fragment frames as one video (Qwen2-VL merges frame pairs) or as one
image per frame (twice the vision tokens; max_length grows to fit).

    python launch.py sweep configs/ablations/presentation.py --workdir DIR [--dry-run]
"""
import importlib.util
import os

_base = importlib.util.spec_from_file_location("sf2t_base", os.path.join(os.path.dirname(__file__), "..", "sf2t.py"))
sf2t = importlib.util.module_from_spec(_base)
_base.loader.exec_module(sf2t)


def get_config(arg=None):
    return sf2t.get_config(arg)


def sweep():
    return [{"name": "video", "arg": "present=video"}, {"name": "images", "arg": "present=images"}]
