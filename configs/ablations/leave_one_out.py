"""Leave-one-task-out: train on all five fragment tasks, then on each four-task subset.

    python launch.py sweep configs/ablations/leave_one_out.py --workdir DIR [--dry-run]
    python launch.py sweep configs/ablations/leave_one_out.py:model=qwen2vl_7b,data=videos --workdir gs://...

Variants: all, no_count, no_consistency, no_localize, no_disorder, no_rearrange (the left-out
task's weight is 0; the others keep equal weights).
"""
import os

from sf2t_jax.configuration import load_module

sf2t = load_module(os.path.join(os.path.dirname(__file__), "..", "sf2t.py"))


def get_config(arg=None):
    return sf2t.get_config(arg)


def sweep():
    return [{"name": "all"}] + [{"name": f"no_{task}", f"input.weights.{task}": 0.0} for task in sf2t.TASKS]
