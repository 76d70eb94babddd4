"""A sample drawn as the model sees it: its frames after resizing, numbered, with question and answer.

Frames are shown at the resolution bucket's pixels (small buckets are enlarged by an integer
factor with nearest-neighbour, so no pixel is invented), numbered 1..N in the order shown:
the positions the question and answer refer to.
"""
from __future__ import annotations

import math
import textwrap

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from sf2t_jax.input.examples import Prepared

MIN_TILE = 112  # smaller frames are enlarged to at least this (integer factor, nearest)
COLUMNS = 6
MARGIN = 8
LINE_H = 20  # pixels per text line
BACKGROUND = (250, 250, 250)
INK = (20, 20, 20)
ANSWER_INK = (0, 110, 40)


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)  # a scalable font (Pillow >= 10.1 with FreeType)
    except (TypeError, OSError):
        return ImageFont.load_default()


def contact_sheet(prepared: Prepared, *, columns: int = COLUMNS) -> Image.Image:
    """An RGB PIL image of one prepared sample."""
    sample = prepared.sample
    frames = np.asarray(sample.frames)
    n, h, w, _ = frames.shape
    scale = max(1, math.ceil(MIN_TILE / h))
    th, tw = h * scale, w * scale
    cols = min(n, columns)
    rows = math.ceil(n / cols)
    title_font, text_font, label_font = _font(16), _font(14), _font(13)
    width = max(cols * (tw + MARGIN) + MARGIN, 640)
    chars = max(40, int(width / 7.5))  # wrap width for ~14 px text

    if sample.present == "video":
        slices = math.ceil(n / 2)
        layout = f"video: {n} frames -> {slices} temporal slices" + (" (last frame repeated to pair)" if n % 2 else "")
    else:
        layout = f"images: {n} images, one slice each"
    header = [(f"#{prepared.index}  {sample.task}  ({prepared.id}, record {prepared.record_index})", title_font, INK),
              (f"{layout}; {w}x{h} px; {prepared.num_tokens} tokens", text_font, INK)]
    footer = [(line, text_font, INK) for line in textwrap.wrap("Q: " + sample.question, chars)]
    footer += [(line, text_font, ANSWER_INK) for line in textwrap.wrap("A: " + sample.answer, chars)]
    line_h = LINE_H
    top = MARGIN + len(header) * line_h + MARGIN  # the first row of tiles
    grid_h = rows * (th + MARGIN)
    height = top + grid_h + len(footer) * line_h + 2 * MARGIN

    sheet = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    y = MARGIN
    for text, font, ink in header:
        draw.text((MARGIN, y), text, fill=ink, font=font)
        y += line_h
    for k in range(n):
        r, c = divmod(k, cols)
        x0, y0 = MARGIN + c * (tw + MARGIN), top + r * (th + MARGIN)
        tile = Image.fromarray(frames[k])
        if scale > 1:
            tile = tile.resize((tw, th), Image.Resampling.NEAREST)
        sheet.paste(tile, (x0, y0))
        label = str(k + 1)
        box = draw.textbbox((0, 0), label, font=label_font)
        draw.rectangle((x0, y0, x0 + box[2] + 6, y0 + box[3] + 4), fill=(0, 0, 0))
        draw.text((x0 + 3, y0 + 1), label, fill=(255, 255, 255), font=label_font)
    y = top + grid_h + MARGIN
    for text, font, ink in footer:
        draw.text((MARGIN, y), text, fill=ink, font=font)
        y += line_h
    return sheet
