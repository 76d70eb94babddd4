"""How a model family turns decoded frames and a conversation into one batch row (host side).

The input pipeline (`sf2t_jax.input.examples`) is family-free: it asks the family's
`RowFormat` (`models.family.row_format(config)`) for

  * `video_slices(frames, fps)` / `image_slices(frames)`: uint8 patch rows (n, S, patch_dim) and
    the keyword arguments that describe them to the chat encoder (`fps`: the rate of the
    sampled frames, which Qwen2.5-VL's time axis needs; None: the processor's default);
  * `encode(tokenizer, messages, loss_on=..., **vision)`: the `EncodedChat` (ids, loss mask,
    (3, L) positions) of the family's chat template with its placeholders expanded;
  * `vision_token_ids(tokenizer)`, `pad_id(tokenizer)`, `tokens_around_item`,
    `check_tokenizer(tokenizer)` (the vocabulary agrees with the ids the template writes);
  * for scoring and generation (`sf2t_jax.eval`): `answer_ids(tokenizer, text)`, the tokens an
    answer takes after the generation prompt, `end_id(tokenizer)`, the token that closes an
    answer, and `stop_ids(tokenizer)`, the tokens greedy decoding stops at.

    family             slice            template                          positions
    Qwen2-VL, 2.5-VL   2 frames, 1176   <|im_start|>... <|vision_start|>  M-RoPE (2.5: absolute time)
    LLaVA-NeXT-Video   1 frame, 588     USER: <video>\\n... ASSISTANT:     1D, three equal rows

Patch rows stay uint8 until batching normalizes them (both families' processors use CLIP's
mean and std, and both flatten a patch channel-major, so one normalization serves both).
"""
from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from sf2t_jax.errors import InputError
from sf2t_jax.models.rope_index import VideoTime
from sf2t_jax.models.slices import SliceLayout
from sf2t_jax.text.chat import EncodedChat, encode_chat
from sf2t_jax.text.llava_chat import LlavaTokens, encode_llava_answer, encode_llava_chat
from sf2t_jax.text.tokenizer import Tokenizer


class UnsupportedPresentation(InputError):
    """The family cannot show frames this way through the input pipeline."""


@dataclasses.dataclass(frozen=True)
class QwenRows:
    """Qwen2-VL / Qwen2.5-VL rows: `encode_chat`, 2-frame slices, 2x2 merge, M-RoPE."""

    layout: SliceLayout
    video_time: VideoTime | None = None  # Qwen2.5-VL's absolute time axis; None: Qwen2-VL's
    tokens_around_item: int = 2  # <|vision_start|> ... <|vision_end|>

    def video_slices(self, frames: np.ndarray, fps: float | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        """Frames sampled at `fps` per second (None: the processor's default rate) -> slices and
        the grid, plus, for Qwen2.5-VL, that clip's time axis."""
        from sf2t_jax.video import patchify_video, to_slices

        rows, grid = patchify_video(frames, normalized=False)
        vision: dict[str, Any] = {"video_grid_thw": grid[None]}
        if self.video_time is not None and fps is not None:
            if not fps > 0:
                raise ValueError(f"video fps must be positive, got {fps!r}")
            # transformers' `second_per_grid_ts = temporal_patch_size / fps`, per video
            vision["video_time"] = dataclasses.replace(self.video_time,
                                                       seconds_per_slice=self.layout.frames_per_slice / fps)
        return to_slices(rows, grid), vision

    def image_slices(self, frames: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
        from sf2t_jax.video import patchify_image

        images = [patchify_image(f, normalized=False) for f in frames]
        return np.stack([r for r, _ in images]), {"image_grid_thw": np.stack([g for _, g in images])}

    def encode(self, tokenizer: Tokenizer, messages, **kwargs) -> EncodedChat:
        """`video_time` (from `video_slices`) overrides the family's default-rate axis."""
        kwargs.setdefault("video_time", self.video_time)
        return encode_chat(tokenizer, messages, spatial_merge_size=self.layout.token_pool, **kwargs)

    def vision_token_ids(self, tokenizer: Tokenizer) -> tuple[int, int]:
        return tokenizer.special.image_pad, tokenizer.special.video_pad

    def pad_id(self, tokenizer: Tokenizer) -> int:
        return tokenizer.special.endoftext

    def check_tokenizer(self, tokenizer: Tokenizer) -> None:
        """SpecialTokenError unless the vocabulary is Qwen2's (the template writes its special tokens)."""
        tokenizer.special  # noqa: B018 (the check is the lookup)

    def answer_ids(self, tokenizer: Tokenizer, text: str) -> np.ndarray:
        """(T,) int32: the answer's own tokens. Qwen2's pre-tokenizer splits at the "\\n" that ends
        `<|im_start|>assistant\\n`, so no BPE merge crosses into the answer."""
        return np.asarray(tokenizer.encode(text), np.int32)

    def end_id(self, tokenizer: Tokenizer) -> int:
        return tokenizer.special.im_end

    def stop_ids(self, tokenizer: Tokenizer) -> tuple[int, ...]:
        # Qwen2-VL-Instruct's generation_config ends on either token.
        return tokenizer.special.im_end, tokenizer.special.endoftext


@dataclasses.dataclass(frozen=True)
class LlavaRows:
    """LLaVA-NeXT-Video rows: `encode_llava_chat`, one frame per slice at the tower's fixed
    resolution, pooled frame tokens, 1D positions; ids from the model config."""

    layout: SliceLayout
    tokens: LlavaTokens
    pad: int  # config.pad_token_id
    tokens_around_item: int = 0  # `<video>\n`: the newline is text, no marker tokens

    @classmethod
    def from_config(cls, config) -> "LlavaRows":
        return cls(layout=config.slice_layout, tokens=LlavaTokens.from_config(config), pad=config.pad_token_id)

    def video_slices(self, frames: np.ndarray, fps: float | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        """uint8 (N, s, s, 3) frames -> uint8 (N, (s/p)**2, 3*p*p) rows (the Conv2d's (c, y, x) order).
        `fps` is ignored: positions are 1D."""
        from sf2t_jax.models.llava_next_video.anyres import pixels_to_patches

        frames = np.asarray(frames)
        want = tuple(self.layout.fixed_resolution)
        if frames.ndim != 4 or frames.shape[1:3] != want or frames.shape[3] != 3:
            raise ValueError(f"frames of shape {frames.shape}: this model takes (N, {want[0]}, {want[1]}, 3) frames")
        return pixels_to_patches(frames.transpose(0, 3, 1, 2), self.layout.patch_size), {"video_frames": [len(frames)]}

    def image_slices(self, frames: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
        raise UnsupportedPresentation(
            "LLaVA-NeXT-Video shows images as anyres tiles, which the input pipeline does not make; "
            "present the frames as a video (input.present='video')")

    def encode(self, tokenizer: Tokenizer, messages, **kwargs) -> EncodedChat:
        return encode_llava_chat(tokenizer, messages, self.tokens, **kwargs)

    def vision_token_ids(self, tokenizer: Tokenizer) -> tuple[int, int]:
        return self.tokens.image, self.tokens.video

    def pad_id(self, tokenizer: Tokenizer) -> int:
        return self.pad

    def check_tokenizer(self, tokenizer: Tokenizer) -> None:
        """InputError when the vocabulary has `<s>`, `</s>`, `<video>` or `<image>` at other ids than
        the model config's (the template writes those ids itself, so a vocabulary may lack them)."""
        tokenizer.check_named_ids(self.tokens.named_ids(), "model config")

    def answer_ids(self, tokenizer: Tokenizer, text: str) -> np.ndarray:
        """(T,) int32: the tokens after `ASSISTANT:` that training targets for this answer."""
        return encode_llava_answer(tokenizer, text)

    def end_id(self, tokenizer: Tokenizer) -> int:
        return self.tokens.eos

    def stop_ids(self, tokenizer: Tokenizer) -> tuple[int, ...]:
        return (self.tokens.eos,)


RowFormat = QwenRows | LlavaRows

# Qwen2-VL's rows: what the pipeline makes when no model family is named (its tests, the demo).
QWEN2_VL_ROWS = QwenRows(SliceLayout(patch_size=14, patch_dim=1176, frames_per_slice=2, token_pool=2,
                                     fixed_resolution=None, mrope=True))
