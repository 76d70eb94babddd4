"""The embedded demo: the synthetic SSv2-format world, its datasets, and (later) the runs.

    python launch.py prepare --config configs/demo.py                 # scale=small
    python launch.py prepare --config configs/demo.py:scale=medium
    python launch.py prepare --config configs/demo.py --config.data.dir=/tmp/demo

Scales (clips train/validation/test, resolution, frames per clip):
  small   480/60/60,       112x112, 24 frames   the laptop demo: prepares in about a minute
  medium  1920/240/240,    112x112, 32 frames
  large   7680/960/960,    224x224, 32 frames
"""
import ml_collections

from sf2t_jax.configuration import parse_arg

SCALES = {
    # name: (train, validation, test clips, side in pixels, frames per clip)
    "small": (480, 60, 60, 112, 24),
    "medium": (1920, 240, 240, 112, 32),
    "large": (7680, 960, 960, 224, 32),
}


def get_config(arg=None):
    arg = parse_arg(arg, scale="small")
    if arg.scale not in SCALES:
        raise ValueError(f"configs/demo.py: scale={arg.scale!r}, expected one of {sorted(SCALES)}")
    train, validation, test, side, frames = SCALES[arg.scale]
    config = ml_collections.ConfigDict()
    config.scale = arg.scale

    # ---- world: the synthetic SSv2-format folder (sf2t_jax.world.WorldConfig) ----------------
    config.world = ml_collections.ConfigDict(dict(
        train_clips=train, validation_clips=validation, test_clips=test,
        height=side, width=side, num_frames=frames, fps=12,
        seed=0, codec="vp9",  # vp9 in WebM, as SSv2 ships; "h264" writes .mp4
        max_objects=3,
    ))

    # ---- data: where datasets go and how the source's splits are used ------------------------
    config.data = ml_collections.ConfigDict(dict(
        dir=f"workdirs/demo_{arg.scale}/data",  # world/, tfds/, finevidbench/, prepare.json
        source="",  # an SSv2-format folder instead of the world ("" renders; --source sets it)
        # label split per role; "auto": benchmark = test if labels/test.json has labels, else
        # validation (real SSv2); heldout = validation unless the benchmark uses it ("" = none)
        train_split="train",
        heldout_split="auto",
        benchmark_split="auto",
        check_videos=True,  # open every video once; skip and list those that do not decode
    ))
    # FineVidBench construction (sf2t_jax.finevidbench.BenchConfig): about 25 items per video
    config.data.benchmark = ml_collections.ConfigDict(dict(
        seed=0,
        scene_speeds=("x0.5", "x1", "x2", "x4"),  # action and effect asked at these speeds
        speed_speeds=("x0.5", "x1", "x2", "x4", "static"),  # speed asked at these
        sets_per_video=3,  # fragment conversations per video
        frames_per_clip=16,  # fragment frame indices refer to this uniform sampling
        set_size=(4, 8),  # frames per fragment set, inclusive
        shuffled_fraction=0.5,  # share of fragment sets shown shuffled
    ))
    # SFT baseline questions per training video (sf2t_jax.datasets.sft.SftConfig)
    config.data.sft = ml_collections.ConfigDict(dict(
        seed=0,
        scene_speeds=("x0.5", "x1", "x2", "x4"),
        speed_speeds=("x0.5", "x1", "x2", "x4", "static"),
    ))
    return config
