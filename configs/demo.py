"""The embedded demo: the synthetic SSv2-format world, its datasets, and the paper's four runs
(Base, SFT, SF²T, SFT+SF²T) evaluated on the synthetic FineVidBench (docs/demo.md).

    python launch.py demo                                             # everything, scale=small
    python launch.py demo --scale medium --workdir runs/demo_medium
    python launch.py prepare --config configs/demo.py                 # the data only
    python launch.py prepare --config configs/demo.py:scale=medium
    python launch.py prepare --config configs/demo.py --config.data.dir=/tmp/demo

Scales (clips train/validation/test, resolution, frames per clip):
  small   1920/60/60,      112x112, 24 frames   the laptop demo: prepares in about three minutes
  medium  3840/240/240,    112x112, 32 frames
  large   7680/960/960,    224x224, 32 frames
Training steps per stage grow with the scale; the model is the same. Arguments: scale, and
joint=True for the joint SFT+SF²T ablation. Every field is documented in
sf2t_jax/defaults/demo.py, which `launch.py demo` uses when given no --config (so an installed
sf2t_jax runs the demo without this folder).
"""
from sf2t_jax.defaults.demo import SCALES, STAGES, STEPS, TOWER_STEPS, demo_config

__all__ = ["SCALES", "STAGES", "STEPS", "TOWER_STEPS", "get_config"]


def get_config(arg=None):
    return demo_config(arg)
