"""LLaVA-NeXT-Video: a CLIP tower read at `vision_feature_layer`, video frames pooled and images
tiled (anyres), a two-layer GELU projector, `image_newline`, and a Llama decoder (the project's
decoder with 1D RoPE and no q/k/v biases).

It is a `Qwen2VL` subclass: the decoder (`model`), `lm_head`, the scatter of vision features into
the sequence (`embed`), the logits and the forward are shared, so the trainer, scorer and
generation run it unchanged. Only the vision side differs (`encode_vision`): a `VisionPatches`
group is video frames (pooled, `tokens_per_frame` tokens each, transformers'
`get_video_features`); an `ImageTiles` group is anyres images (every tile's features, gathered
into `pack_image_features`' order with `image_newline` by a host-computed index).

Parameter paths: `vision_tower.*` (Hub `vision_tower.vision_model.*`), `multi_modal_projector.*`,
`image_newline`, `model.*` (Hub `language_model.model.*`), `lm_head` (`language_model.lm_head`);
the conversion rules are `sf2t_jax.convert.table.LLAVA_NEXT_VIDEO_RULES`.
"""
from __future__ import annotations

from collections.abc import Sequence

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from sf2t_jax.models import qwen2_vl
from sf2t_jax.models.layers import Numerics, linear
from sf2t_jax.models.llava_next_video import anyres
from sf2t_jax.models.llava_next_video.config import LlavaNextVideoConfig
from sf2t_jax.models.llava_next_video.vision import ClipVisionTower, Projector, pool_frames
from sf2t_jax.models.llm import Qwen2Model
from sf2t_jax.models.rope_index import text_positions
from sf2t_jax.models.vision import VisionPatches


@flax.struct.dataclass
class ImageTiles:
    """Anyres tiles of one or more images and the order their features take in the sequence.

    tiles: (T, S, patch_dim) raster-order patches of every tile (`anyres.anyres_tiles`).
    layout: (M,) int32 index into the tiles' projected features flattened to (T*S, D), with
      T*S meaning `image_newline` (`anyres.image_feature_layout`, offset per image).
    """

    tiles: VisionPatches
    layout: jax.Array


class LlavaNextVideo(qwen2_vl.Qwen2VL):
    """LlavaNextVideoForConditionalGeneration in Flax NNX; inputs and outputs as `Qwen2VL`
    (position_ids (3, B, L) with three equal rows: 1D positions)."""

    def __init__(self, config: LlavaNextVideoConfig, numerics: Numerics = Numerics(), *, rngs: nnx.Rngs):
        self.config = config
        self.numerics = numerics
        self.vision_tower = ClipVisionTower(config, numerics, rngs)
        self.multi_modal_projector = Projector(config, numerics, rngs)
        d = config.text.hidden_size
        self.image_newline = nnx.Param(d**-0.5 * jax.random.normal(rngs.params(), (d,), numerics.param_dtype),
                                       logical_axes=("embed",))
        self.model = Qwen2Model(config.text, numerics, rngs)
        self.lm_head = linear(d, config.text.vocab_size, ("embed", "vocab"), bias=False, numerics=numerics, rngs=rngs)

    def video_features(self, frames: VisionPatches) -> jax.Array:
        """(N frames, S, patch_dim) -> (N, tokens_per_frame, D): tower, pooling, projector."""
        c = self.config
        pooled = pool_frames(self.vision_tower(frames), c.vision.grid, c.spatial_pool_stride, c.spatial_pool_mode)
        return self.multi_modal_projector(pooled)

    def image_features(self, images: ImageTiles) -> jax.Array:
        """(M, D): every image's tokens in `pack_image_features`' order."""
        feats = self.multi_modal_projector(self.vision_tower(images.tiles))
        flat = feats.reshape(-1, feats.shape[-1])
        flat = jnp.concatenate([flat, self.image_newline[...].astype(flat.dtype)[None]], axis=0)
        return flat[images.layout]

    def encode_vision(self, vision: Sequence[VisionPatches | ImageTiles]) -> jax.Array:
        """(M, D): the tokens of every group, concatenated in group order."""
        feats = [self.image_features(g) if isinstance(g, ImageTiles) else self.video_features(g) for g in vision]
        return jnp.concatenate([f.reshape(-1, f.shape[-1]) for f in feats], axis=0)

    def hf_logits(self, input_ids, attention_mask=None, pixel_values=None, image_sizes=None,
                  pixel_values_videos=None) -> np.ndarray:
        """Logits for exactly the numpy arrays a Hugging Face LLaVA-NeXT-Video processor produces.
        Positions follow the attention mask (transformers' generate; pass the same
        `position_ids` to a transformers forward). Returns (B, L, vocab) float32 numpy."""
        inputs = prepare_hf_inputs(self.config, input_ids, attention_mask, pixel_values, image_sizes,
                                   pixel_values_videos)
        graphdef, state = nnx.split(self)
        return np.asarray(jax.device_get(qwen2_vl._jitted_logits(graphdef, state, **inputs)))


def prepare_hf_inputs(config: LlavaNextVideoConfig, input_ids, attention_mask=None, pixel_values=None,
                      image_sizes=None, pixel_values_videos=None) -> dict:
    """Host-side conversion of processor outputs into `LlavaNextVideo.__call__` keyword
    arguments plus `rope_deltas`.

    Args:
      pixel_values: (num_images, max_tiles, C, s, s) tiles, zero-padded per image (or the
        (tiles, C, s, s) concatenation); image_sizes: (num_images, 2) original (height, width).
      pixel_values_videos: (num_videos, frames, C, s, s).
    Raises ValueError when the `<image>` / `<video>` token counts differ from the features.
    """
    input_ids = np.asarray(_np(input_ids))
    if input_ids.ndim != 2:
        raise ValueError(f"input_ids must be (batch, length), got shape {input_ids.shape}")
    attention_mask = np.ones_like(input_ids) if attention_mask is None else np.asarray(_np(attention_mask))
    flat_ids = input_ids.reshape(-1)
    p = config.vision.patch_size
    vision, index = [], []
    image_positions = np.nonzero(flat_ids == config.image_token_id)[0]
    if pixel_values is not None and len(pixel_values):
        pixel_values, sizes = np.asarray(_np(pixel_values)), np.asarray(_np(image_sizes)).reshape(-1, 2)
        counts = [anyres.num_tiles(config, tuple(int(v) for v in hw)) for hw in sizes]
        if pixel_values.ndim == 5:
            pixel_values = np.concatenate([pix[:n] for pix, n in zip(pixel_values, counts)])
        s = config.vision.num_patches
        layouts, offset = [], 0
        for hw, n in zip(sizes, counts):
            layout = anyres.image_feature_layout(config, tuple(int(v) for v in hw))
            layouts.append(np.where(layout == anyres.NEWLINE, -1, layout + offset * s))
            offset += n
        layout = np.concatenate(layouts)
        layout = np.where(layout < 0, offset * s, layout).astype(np.int32)
        if layout.size != image_positions.size:
            raise ValueError(f"Image features and image tokens do not match: tokens: {image_positions.size}, "
                             f"features {layout.size}")
        grid = config.vision.grid
        patches = anyres.pixels_to_patches(pixel_values, p).astype(np.float32)
        vision.append(ImageTiles(tiles=VisionPatches(patches=patches, grid_hw=(grid, grid)), layout=layout))
        index.append(image_positions)
    elif image_positions.size:
        raise ValueError(f"input_ids hold {image_positions.size} image tokens but no pixel_values were given")
    video_positions = np.nonzero(flat_ids == config.video_token_id)[0]
    if pixel_values_videos is not None and len(pixel_values_videos):
        videos = np.asarray(_np(pixel_values_videos))
        frames = videos.reshape((-1,) + videos.shape[2:])
        if len(frames) * config.tokens_per_frame != video_positions.size:
            raise ValueError(f"Video features and video tokens do not match: tokens: {video_positions.size}, "
                             f"features {len(frames) * config.tokens_per_frame}")
        grid = config.vision.grid
        vision.append(VisionPatches(patches=anyres.pixels_to_patches(frames, p).astype(np.float32),
                                    grid_hw=(grid, grid)))
        index.append(video_positions)
    elif video_positions.size:
        raise ValueError(f"input_ids hold {video_positions.size} video tokens but no pixel_values_videos were given")
    position_ids, rope_deltas = text_positions(attention_mask)
    vision_index = np.concatenate(index).astype(np.int32) if index else np.zeros((0,), np.int32)
    return dict(input_ids=input_ids.astype(np.int32), position_ids=position_ids,
                attention_mask=attention_mask.astype(np.int32), vision=tuple(vision), vision_index=vision_index,
                rope_deltas=rope_deltas)


_np = qwen2_vl._np
