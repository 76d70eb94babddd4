"""The Qwen2-VL-Instruct chat template: token ids, loss mask and M-RoPE positions, in numpy.

`encode_chat(tokenizer, messages, image_grid_thw=..., video_grid_thw=...)` produces exactly the
`input_ids` that transformers 4.49's `Qwen2VLProcessor` gives for
`processor(text=processor.apply_chat_template(messages), images=..., videos=...)` with
`QWEN2_VL_CHAT_TEMPLATE` (the released Qwen2-VL-*-Instruct `chat_template.json`):

    [<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n]     (if messages[0] is not system)
    <|im_start|>{role}\\n{content}<|im_end|>\\n                        (each message)
    [<|im_start|>assistant\\n]                                         (add_generation_prompt)

Content is a string, or a list of items rendered back to back with no separator: text
(`{"type": "text", "text": ...}`), image (`{"type": "image"}`) ->
`<|vision_start|><|image_pad|><|vision_end|>`, video (`{"type": "video"}`) ->
`<|vision_start|><|video_pad|><|vision_end|>`; with `add_vision_id`, "Picture k: " / "Video k: "
precede them. Each pad is then expanded to `gt*gh*gw // 4` copies (its merged token count),
grids consumed in order of appearance.

Tokenization follows transformers: special tokens split the text, and each run of text between
two special tokens is encoded as one string (BPE merges never cross a special token).

Loss mask: the tokens of every assistant answer (its content and the closing `<|im_end|>`), not
the `<|im_start|>assistant\\n` header nor the `\\n` after `<|im_end|>`. This is what
LLaMA-Factory's and ms-swift's Qwen2-VL templates train on (the closing `<|im_end|>` teaches the
model to stop; ms-swift also excludes the trailing newline). `loss_on="last"` keeps only the
final answer (e.g. to score one option after a multi-turn history).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from sf2t_jax.models.rope_index import VideoTime, get_rope_index, rope_time_kwargs
from sf2t_jax.text.tokenizer import SPECIAL_TOKENS, Tokenizer

DEFAULT_SYSTEM_PROMPT = "You are a helpful assistant."
ROLES = ("system", "user", "assistant")
LOSS_ON = ("assistant", "last", "none")

# Qwen/Qwen2-VL-7B-Instruct chat_template.json (also 2B-Instruct), verbatim.
QWEN2_VL_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

Message = Mapping[str, Any]  # {"role": "user", "content": str | [item, ...]}
_VISION_STRINGS = tuple(SPECIAL_TOKENS[k] for k in ("vision_start", "vision_end", "vision_pad", "image_pad", "video_pad"))


@dataclasses.dataclass(frozen=True)
class EncodedChat:
    """One tokenized conversation.

    input_ids: (L,) int32.
    loss_mask: (L,) bool; True where input_ids[i] is a training target (the trainer predicts
      token i from position i-1).
    position_ids: (3, L) int32 M-RoPE (temporal, height, width) positions.
    rope_delta: max(position) + 1 - L, for decoding with a KV cache.
    image_grid_thw / video_grid_thw: (N, 3) int64 grids in order of appearance.
    """

    input_ids: np.ndarray
    loss_mask: np.ndarray
    position_ids: np.ndarray
    rope_delta: int
    image_grid_thw: np.ndarray
    video_grid_thw: np.ndarray

    def labels(self, ignore_index: int = -100) -> np.ndarray:
        """Hugging Face-style (unshifted) labels: input_ids where targeted, else ignore_index."""
        return np.where(self.loss_mask, self.input_ids, ignore_index).astype(np.int32)


# A rendered conversation is a list of pieces: ("text", str, target), ("special", name, target),
# ("image", k, False) or ("video", k, False), k counting images / videos from 0.
_Piece = tuple[str, Any, bool]


def render_chat(messages: Sequence[Message], *, add_generation_prompt: bool = False, add_vision_id: bool = False) -> str:
    """The template as text, with one pad token per image/video (apply_chat_template's output)."""
    out = []
    for kind, value, _ in _render(messages, add_generation_prompt, add_vision_id, "none"):
        if kind == "text":
            out.append(value)
        elif kind == "special":
            out.append(SPECIAL_TOKENS[value])
        else:
            out.append(SPECIAL_TOKENS["image_pad" if kind == "image" else "video_pad"])
    return "".join(out)


def encode_chat(
    tokenizer: Tokenizer,
    messages: Sequence[Message],
    *,
    image_grid_thw: np.ndarray | Sequence[Sequence[int]] | None = None,
    video_grid_thw: np.ndarray | Sequence[Sequence[int]] | None = None,
    add_generation_prompt: bool = False,
    add_vision_id: bool = False,
    loss_on: str = "assistant",
    spatial_merge_size: int = 2,
    video_time: VideoTime | None = None,
) -> EncodedChat:
    """Tokenizes a conversation with its vision placeholders expanded.

    Args:
      tokenizer: a Qwen2-VL `Tokenizer`.
      messages: [{"role": "system"|"user"|"assistant", "content": str | [items]}, ...].
      image_grid_thw / video_grid_thw: (N, 3) grids (patch units, as `patchify` returns),
        one row per image / video item in order of appearance.
      add_generation_prompt: end with `<|im_start|>assistant\\n` (for generation / scoring).
      add_vision_id: prefix "Picture k: " / "Video k: " (the template's option).
      loss_on: "assistant" (every answer), "last" (the last answer only) or "none".
      video_time: Qwen2.5-VL's absolute time axis for video positions
        (`models.family.video_time`); None: Qwen2-VL's positions (one per temporal slice).
    Returns:
      `EncodedChat`.
    """
    if loss_on not in LOSS_ON:
        raise ValueError(f"loss_on must be one of {LOSS_ON}, got {loss_on!r}")
    grids = {"image": _grid_rows(image_grid_thw, "image_grid_thw"), "video": _grid_rows(video_grid_thw, "video_grid_thw")}
    pieces = _render(messages, add_generation_prompt, add_vision_id, loss_on)
    for kind in ("image", "video"):
        n_items = sum(p[0] == kind for p in pieces)
        if n_items != len(grids[kind]):
            raise ValueError(f"the conversation has {n_items} {kind} item(s) but {kind}_grid_thw has "
                             f"{len(grids[kind])} row(s)")
    special = tokenizer.special
    ids: list[np.ndarray] = []
    mask: list[np.ndarray] = []
    run: list[tuple[str, bool]] = []  # text between two special tokens, encoded as one string

    def flush():
        if run:
            run_ids, run_mask = _encode_run(tokenizer, run)
            ids.append(run_ids)
            mask.append(run_mask)
            run.clear()

    for kind, value, target in pieces:
        if kind == "text":
            run.append((value, target))
            continue
        flush()
        if kind == "special":
            ids.append(np.array([getattr(special, value)], np.int32))
            mask.append(np.array([target]))
        else:
            gt, gh, gw = (int(v) for v in grids[kind][value])
            if gh % spatial_merge_size or gw % spatial_merge_size:
                raise ValueError(f"{kind} {value}: grid ({gt}, {gh}, {gw}) is not divisible by merge {spatial_merge_size}")
            n = gt * gh * gw // spatial_merge_size**2
            pad = special.image_pad if kind == "image" else special.video_pad
            ids.append(np.full((n,), pad, np.int32))
            mask.append(np.zeros((n,), bool))
    flush()
    input_ids = np.concatenate(ids).astype(np.int32)
    loss_mask = np.concatenate(mask).astype(bool)
    position_ids, deltas = get_rope_index(
        input_ids[None],
        grids["image"] if len(grids["image"]) else None,
        grids["video"] if len(grids["video"]) else None,
        image_token_id=special.image_pad,
        video_token_id=special.video_pad,
        vision_start_token_id=special.vision_start,
        spatial_merge_size=spatial_merge_size,
        **rope_time_kwargs(video_time, len(grids["video"])),
    )
    return EncodedChat(
        input_ids=input_ids, loss_mask=loss_mask, position_ids=position_ids[:, 0], rope_delta=int(deltas[0]),
        image_grid_thw=grids["image"], video_grid_thw=grids["video"],
    )


# ----------------------------------------------------------------------------------------
# Rendering
# ----------------------------------------------------------------------------------------
def _render(messages: Sequence[Message], add_generation_prompt: bool, add_vision_id: bool, loss_on: str) -> list[_Piece]:
    """The template as pieces, each flagged as a loss target or not."""
    if not messages:
        raise ValueError("a conversation needs at least one message")
    answers = [i for i, m in enumerate(messages) if _role(m, i) == "assistant"]
    targeted = set() if loss_on == "none" else set(answers[-1:] if loss_on == "last" else answers)
    pieces: list[_Piece] = []
    counts = {"image": 0, "video": 0}
    if _role(messages[0], 0) != "system":
        pieces += [("special", "im_start", False), ("text", f"system\n{DEFAULT_SYSTEM_PROMPT}", False),
                   ("special", "im_end", False), ("text", "\n", False)]
    for i, message in enumerate(messages):
        role, target = _role(message, i), i in targeted
        pieces += [("special", "im_start", False), ("text", f"{role}\n", False)]
        content = message.get("content")
        if isinstance(content, str):
            pieces.append(("text", _check_text(content, i), target))
        elif isinstance(content, Sequence):
            for j, item in enumerate(content):
                pieces += _render_item(item, i, j, counts, add_vision_id, target)
        else:
            raise ValueError(f"message {i}: content must be a string or a list of items, got {type(content).__name__}")
        pieces += [("special", "im_end", target), ("text", "\n", False)]
    if add_generation_prompt:
        pieces += [("special", "im_start", False), ("text", "assistant\n", False)]
    return pieces


def _render_item(item, i: int, j: int, counts: dict, add_vision_id: bool, target: bool) -> list[_Piece]:
    if not isinstance(item, Mapping):
        raise ValueError(f"message {i} item {j}: expected a dict like {{'type': 'text', 'text': ...}}, got {item!r}")
    kind = item.get("type")
    # The template's own tests, in its order.
    if kind == "image" or "image" in item or "image_url" in item:
        kind = "image"
    elif kind == "video" or "video" in item:
        kind = "video"
    elif "text" in item:
        return [("text", _check_text(item["text"], i), target)]
    else:
        # The Jinja template would silently drop the item; an unknown item is a bug upstream.
        raise ValueError(f"message {i} item {j}: not a text, image or video item: {dict(item)!r}")
    counts[kind] += 1
    out: list[_Piece] = []
    if add_vision_id:
        out.append(("text", f"{'Picture' if kind == 'image' else 'Video'} {counts[kind]}: ", False))
    return out + [("special", "vision_start", False), (kind, counts[kind] - 1, False), ("special", "vision_end", False)]


def _role(message: Message, i: int) -> str:
    role = message.get("role") if isinstance(message, Mapping) else None
    if role not in ROLES:
        raise ValueError(f"message {i}: role must be one of {ROLES}, got {role!r}")
    return role


def _check_text(text: Any, i: int) -> str:
    if not isinstance(text, str):
        raise ValueError(f"message {i}: text must be a string, got {type(text).__name__}")
    for token in _VISION_STRINGS:
        if token in text:
            raise ValueError(f"message {i}: text contains {token!r}; give images and videos as "
                             "{'type': 'image'} / {'type': 'video'} items so their tokens are expanded")
    return text


# ----------------------------------------------------------------------------------------
# Tokenization
# ----------------------------------------------------------------------------------------
def _encode_run(tokenizer: Tokenizer, run: list[tuple[str, bool]]) -> tuple[np.ndarray, np.ndarray]:
    """Encodes text pieces as one string; a token is a target if it overlaps a target piece."""
    text = "".join(t for t, _ in run)
    encoding = tokenizer.backend.encode(text, add_special_tokens=False)
    token_ids = np.asarray(encoding.ids, np.int32)
    target = np.zeros((len(token_ids),), bool)
    start = 0
    spans = []
    for piece, is_target in run:
        if is_target and piece:
            spans.append((start, start + len(piece)))
        start += len(piece)
    if spans:
        offsets = np.asarray(encoding.offsets, np.int64).reshape(-1, 2)
        for lo, hi in spans:
            target |= (offsets[:, 0] < hi) & (offsets[:, 1] > lo)
    return token_ids, target


def _grid_rows(grid, field: str) -> np.ndarray:
    if grid is None:
        return np.zeros((0, 3), np.int64)
    grid = np.asarray(grid, np.int64)
    if grid.size == 0:
        return np.zeros((0, 3), np.int64)
    if grid.ndim == 1 and grid.shape[0] == 3:
        grid = grid[None]
    if grid.ndim != 2 or grid.shape[1] != 3:
        raise ValueError(f"{field} must be (N, 3), got shape {grid.shape}")
    return grid
