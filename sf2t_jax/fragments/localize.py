"""`localize`: a sprite is pasted on a contiguous span of the shown frames; where is it.

N frames at random sorted indices; a sprite (shape x colour, fixed size and position) is
pasted on shown frames s..e (1-based, inclusive). Question variants and answers:
  * span: in which frames does it appear -> "frames s to e", or "frame s" when s == e;
  * appear: first frame it is visible -> "frame s";
  * disappear: the first frame where it is gone -> "frame e+1". Such spans end before the
    last frame, so the sprite always does disappear within the fragment.
Span lengths are uniform over 1..N (1..N-1 for disappear), then the start is uniform.

The default shapes avoid the synthetic world's object shapes (`sf2t_jax.world.shapes`:
circle, square, triangle, star, pentagon, diamond), so "the green heart" never also names
an object of the scene.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from sf2t_jax.fragments import base, sprites
from sf2t_jax.sample import Sample, SampleSkip

TASK = "localize"
VARIANTS = ("span", "appear", "disappear")
MIN_SIDE = 8  # pixels; room for a legible sprite
MIN_SPRITE = 6  # pixels; smaller shapes stop looking like their names


@dataclasses.dataclass(frozen=True)
class LocalizeConfig:
    """Defaults from spec §2 where it speaks; the rest are ours."""

    # Inclusive range of N, the frames shown; N ~ U{lo..min(hi, T)} for a clip of T frames.
    n_frames: tuple[int, int] = (6, 16)
    variants: tuple[str, ...] = VARIANTS  # question variants, drawn uniformly
    shapes: tuple[str, ...] = ("cross", "ring", "heart", "hexagon", "arrow", "crescent")
    colors: tuple[str, ...] = tuple(sprites.SPRITE_COLORS)  # names of `sprites.SPRITE_COLORS`
    size_frac: tuple[float, float] = (0.15, 0.3)  # sprite side / min(H, W), drawn uniformly
    outline: bool = True  # 1-pixel dark outline around the sprite
    # Placeholder {sprite}: "<colour> <shape>", e.g. "green heart".
    span_questions: tuple[str, ...] = (
        "In which frames does the {sprite} appear?",
        "Which frames show the {sprite}?",
        "During which frames is the {sprite} visible? Answer like 'frames 2 to 5'.",
    )
    appear_questions: tuple[str, ...] = (
        "In which frame does the {sprite} first appear?",
        "When does the {sprite} show up for the first time? Answer with a frame number.",
        "What is the first frame in which the {sprite} is visible?",
    )
    disappear_questions: tuple[str, ...] = (
        "In which frame does the {sprite} disappear?",
        "What is the first frame in which the {sprite} is no longer visible?",
        "From which frame on is the {sprite} gone?",
    )
    present: str = "video"  # 'video' or 'images'

    def __post_init__(self):
        owner = "LocalizeConfig"
        base.check_range(owner, "n_frames", self.n_frames, 2)  # disappear needs e < N
        base.check_subset(owner, "variants", self.variants, VARIANTS)
        base.check_subset(owner, "shapes", self.shapes, sprites.SPRITE_SHAPES)
        base.check_subset(owner, "colors", self.colors, sprites.SPRITE_COLORS)
        base.check_float_range(owner, "size_frac", self.size_frac, 0.01, 1.0)
        for field in ("span_questions", "appear_questions", "disappear_questions"):
            base.check_questions(owner, field, getattr(self, field), ("sprite",))
        base.check_present(owner, self.present)


def span_answer(start: int, end: int) -> str:
    """'frames 3 to 9', or 'frame 3' for a one-frame span (1-based, inclusive)."""
    return f"frame {start}" if start == end else f"frames {start} to {end}"


def make_localize(frames: np.ndarray, rng: np.random.Generator,
                  config: LocalizeConfig = LocalizeConfig()) -> Sample:
    """frames: uint8 (T, H, W, 3) -> a sample with uint8 (N, H, W, 3) frames.

    Raises SampleSkip('too_short') when T < n_frames[0].
    """
    t, h, w = base.check_clip(frames)
    lo, hi = config.n_frames
    if t < lo:
        raise SampleSkip("too_short", TASK, f"{t} frames, needs at least {lo}")
    base.require_size(TASK, h, w, MIN_SIDE)
    n = base.draw_count(rng, lo, min(hi, t))
    indices = base.random_sorted_indices(rng, t, n)
    _, variant = base.pick(rng, config.variants)

    last = n - 1 if variant == "disappear" else n
    length = base.draw_count(rng, 1, last)
    start = base.draw_count(rng, 1, last - length + 1)
    end = start + length - 1

    _, shape = base.pick(rng, config.shapes)
    _, color = base.pick(rng, config.colors)
    pad = 2 if config.outline else 0
    size = round(rng.uniform(*config.size_frac) * min(h, w))
    size = int(np.clip(size, MIN_SPRITE, min(h, w) - pad))
    rgb, alpha = sprites.render_sprite(shape, color, size, config.outline)
    y = int(rng.integers(h - alpha.shape[0] + 1))
    x = int(rng.integers(w - alpha.shape[1] + 1))

    shown = frames[indices]  # a fresh copy: pasting never touches the input clip
    for k in range(start - 1, end):
        shown[k] = sprites.paste(shown[k], rgb, alpha, y, x)

    if variant == "span":
        q, template = base.pick(rng, config.span_questions)
        answer = span_answer(start, end)
    elif variant == "appear":
        q, template = base.pick(rng, config.appear_questions)
        answer = f"frame {start}"
    else:
        q, template = base.pick(rng, config.disappear_questions)
        answer = f"frame {end + 1}"
    name = f"{color} {shape}"
    return Sample(
        task=TASK, frames=shown, question=template.format(sprite=name), answer=answer,
        present=config.present,
        metadata={"source_indices": indices.tolist(), "variant": variant, "span": [start, end],
                  "sprite": {"shape": shape, "color": color, "size": size, "y": y, "x": x},
                  "paraphrase": q},
    )
