"""LLaVA-NeXT-Video's `USER: ... ASSISTANT:` chat template: token ids, loss mask, 1D positions.

`encode_llava_chat(tokenizer, messages, tokens, video_frames=[...])` gives the `input_ids` that
transformers 4.49's `LlavaNextVideoProcessor` produces for
`processor(text=processor.apply_chat_template(messages), videos=...)` with
`LLAVA_NEXT_VIDEO_CHAT_TEMPLATE` (llava-hf/LLaVA-NeXT-Video-7B-hf's `chat_template.json`):

    <s>                                              (the Llama tokenizer's BOS)
    USER: <image>\\n...<video>\\n...{text} {text} ...  (each message: images, then videos, then texts)
    ASSISTANT: {answer}                              (role upper-cased; a system message has no header)
    [ASSISTANT:]                                     (add_generation_prompt)

Every text item is followed by one space. Each `<video>` then becomes `frames * tokens_per_frame`
copies of the video token (the pooled frame tokens, the processor's `num_video_tokens`), and
each `<image>` as many image tokens as the caller's `image_tokens` says (anyres counts,
`models.llava_next_video.anyres`). The placeholder, BOS and EOS ids come from the family's
config (`LlavaTokens.from_config`), not the tokenizer, so any tokenizer (a Llama
`tokenizer.json`, or the tiny test tokenizer) encodes the text between them.

Loss mask: the text of every assistant answer with the space that separates it from `ASSISTANT:`
(the generation prompt ends at the colon, so a tokenizer that splits " 5" into " " and "5" must
be taught the space too; not the header, nor the space after the answer) and, when the
conversation ends with an answer, an EOS appended after it: the template writes no EOS, but
LLaVA's own training ends every answer with `</s>` (its vicuna_v1 conversation), which teaches
the model to stop. Scoring prompts (`add_generation_prompt`) are
exactly the processor's ids.

Positions are 1D (`0..L-1`), repeated over the three rows the model's `position_ids` take.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from sf2t_jax.text.chat import LOSS_ON, EncodedChat, Message, _encode_run, _role
from sf2t_jax.text.tokenizer import Tokenizer

# llava-hf/LLaVA-NeXT-Video-7B-hf's chat_template.json, as written from memory: the Hub file
# itself cannot be read offline. Verified by what it renders, not byte for byte: transformers'
# tests/models/llava_next_video/test_processor_llava_next_video.py loads the Hub processor and
# asserts "USER: <image>\nWhat is shown in this image? ASSISTANT:" and, for a video, the Llama
# ids of "USER: <video>\nWhat is shown in this video? ASSISTANT:"; our template renders both
# (tests/test_llava_chat.py). The template the conversion script first uploaded
# (convert_llava_next_video_weights_to_hf.py's `chat_vicuna`) had no video loop and printed a
# system message's text; the system handling here (no header, text then a space) is unverified.
LLAVA_NEXT_VIDEO_CHAT_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] != 'system' %}{{ message['role'].upper() + ': '}}"
    "{% endif %}{# Render all images first #}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>\n' }}{% endfor %}"
    "{# Render all video then #}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'video') %}{{ '<video>\n' }}{% endfor %}"
    "{# Render all text next #}{% if message['role'] != 'assistant' %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{{ content['text'] + ' '}}"
    "{% endfor %}{% else %}{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{% generation %}{{ content['text'] + ' '}}{% endgeneration %}{% endfor %}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"
)
ASSISTANT_PROMPT = "ASSISTANT:"  # the generation prompt (`add_generation_prompt`)
IMAGE_TOKEN = "<image>"
VIDEO_TOKEN = "<video>"


@dataclasses.dataclass(frozen=True)
class LlavaTokens:
    """The ids the template writes itself, and how many tokens one video frame takes."""

    bos: int
    eos: int
    image: int
    video: int
    tokens_per_frame: int

    @classmethod
    def from_config(cls, config) -> "LlavaTokens":
        """From a `LlavaNextVideoConfig` (its `*_token_id`s and pooled frame size)."""
        return cls(bos=config.bos_token_id, eos=config.eos_token_id, image=config.image_token_id,
                   video=config.video_token_id, tokens_per_frame=config.tokens_per_frame)

    def named_ids(self) -> dict[str, tuple[str, int]]:
        """{config field: (the token's string in a Llama vocabulary, its id here)}, for
        `Tokenizer.check_named_ids`."""
        return {"bos_token_id": ("<s>", self.bos), "eos_token_id": ("</s>", self.eos),
                "video_token_id": (VIDEO_TOKEN, self.video), "image_token_id": (IMAGE_TOKEN, self.image)}


def render_llava_chat(messages: Sequence[Message], *, add_generation_prompt: bool = False) -> str:
    """The template as text, one `<image>` / `<video>` per item (apply_chat_template's output)."""
    out = []
    for kind, value, _ in _render(messages, add_generation_prompt, "none", eos=False):
        out.append(value if kind == "text" else IMAGE_TOKEN if kind == "image" else VIDEO_TOKEN)
    return "".join(out)


def encode_llava_chat(
    tokenizer: Tokenizer,
    messages: Sequence[Message],
    tokens: LlavaTokens,
    *,
    video_frames: Sequence[int] = (),
    image_tokens: Sequence[int] = (),
    add_generation_prompt: bool = False,
    loss_on: str = "assistant",
) -> EncodedChat:
    """Tokenizes a conversation with its `<video>` / `<image>` placeholders expanded.

    Args:
      tokenizer: encodes the text between placeholders (no special tokens added).
      messages: [{"role": "system"|"user"|"assistant", "content": str | [items]}, ...].
      tokens: the family's ids (`LlavaTokens.from_config`).
      video_frames: frames of each video item, in order of appearance.
      image_tokens: LLM tokens of each image item (anyres), in order of appearance.
      add_generation_prompt: end with `ASSISTANT:` (for generation / scoring).
      loss_on: "assistant" (every answer), "last" (the last answer only) or "none".
    Returns:
      `EncodedChat` with (3, L) 1D positions, rope_delta 0, and (N, 3) grids (frames, 1, 1)
      per video (no image grids: anyres images are not one grid).
    """
    if loss_on not in LOSS_ON:
        raise ValueError(f"loss_on must be one of {LOSS_ON}, got {loss_on!r}")
    pieces = _render(messages, add_generation_prompt, loss_on, eos=loss_on != "none")
    counts = {"image": list(image_tokens), "video": [int(n) * tokens.tokens_per_frame for n in video_frames]}
    for kind in ("image", "video"):
        n_items = sum(p[0] == kind for p in pieces)
        if n_items != len(counts[kind]):
            given = "image_tokens" if kind == "image" else "video_frames"
            raise ValueError(f"the conversation has {n_items} {kind} item(s) but {given} has {len(counts[kind])}")
    ids: list[np.ndarray] = [np.array([tokens.bos], np.int32)]
    mask: list[np.ndarray] = [np.zeros((1,), bool)]
    run: list[tuple[str, bool]] = []
    seen = {"image": 0, "video": 0}

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
        if kind == "eos":
            ids.append(np.array([tokens.eos], np.int32))
            mask.append(np.array([target]))
            continue
        n = counts[kind][seen[kind]]
        seen[kind] += 1
        ids.append(np.full((n,), tokens.image if kind == "image" else tokens.video, np.int32))
        mask.append(np.zeros((n,), bool))
    flush()
    input_ids = np.concatenate(ids).astype(np.int32)
    positions = np.broadcast_to(np.arange(len(input_ids), dtype=np.int32), (3, len(input_ids))).copy()
    grids = np.array([[int(n), 1, 1] for n in video_frames], np.int64).reshape(-1, 3)
    return EncodedChat(input_ids=input_ids, loss_mask=np.concatenate(mask).astype(bool), position_ids=positions,
                       rope_delta=0, image_grid_thw=np.zeros((0, 3), np.int64), video_grid_thw=grids)


def encode_llava_answer(tokenizer: Tokenizer, text: str) -> np.ndarray:
    """(T,) int32: the tokens that follow the generation prompt `ASSISTANT:` when the answer is
    `text`, as `encode_llava_chat` targets them (its separating space included, no EOS): what a
    scorer appends to a prompt to score, or compare with, that answer.

    Raises ValueError when the tokenizer merges the answer into the prompt's last token (then no
    continuation of the prompt spells the answer)."""
    pieces = _render([{"role": "assistant", "content": text}], False, "last", eos=False)
    ids, target = _encode_run(tokenizer, [(value, is_target) for _, value, is_target in pieces])
    hit = np.flatnonzero(target)
    prompt = np.asarray(tokenizer.encode(ASSISTANT_PROMPT), np.int32)
    if not hit.size or not np.array_equal(ids[:hit[0]], prompt):
        raise ValueError(f"answer {text!r}: its tokens do not continue the generation prompt {ASSISTANT_PROMPT!r} "
                         f"(tokens {ids.tolist()}, answer at {hit.tolist()})")
    return ids[hit[0]:hit[-1] + 1]


# A rendered conversation: ("text", str, target), ("image"|"video", None, False), ("eos", None, target).
_Piece = tuple[str, Any, bool]


def _render(messages: Sequence[Message], add_generation_prompt: bool, loss_on: str, eos: bool) -> list[_Piece]:
    if not messages:
        raise ValueError("a conversation needs at least one message")
    answers = [i for i, m in enumerate(messages) if _role(m, i) == "assistant"]
    targeted = set() if loss_on == "none" else set(answers[-1:] if loss_on == "last" else answers)
    pieces: list[_Piece] = []
    for i, message in enumerate(messages):
        role, target = _role(message, i), i in targeted
        if role != "system":
            # The space after the colon belongs to an answer: the generation prompt ends at
            # `ASSISTANT:`, so whatever tokens follow it are the model's to produce (a tokenizer
            # may split " 5" into " " and "5").
            pieces += [("text", f"{role.upper()}:", False), ("text", " ", target)]
        items = _items(message.get("content"), i)
        # The template's order: every image, then every video, then every text of the message.
        for kind in ("image", "video"):
            for item in items:
                if item["type"] == kind:
                    pieces += [(kind, None, False), ("text", "\n", False)]
        for item in items:
            if item["type"] == "text":
                pieces += [("text", item["text"], target), ("text", " ", False)]
    if eos and answers and answers[-1] == len(messages) - 1 and answers[-1] in targeted:
        pieces.append(("eos", None, True))
    if add_generation_prompt:
        pieces.append(("text", ASSISTANT_PROMPT, False))
    return pieces


def _items(content: Any, i: int) -> list[Mapping[str, Any]]:
    """A message's content as typed items (a string is one text item)."""
    if isinstance(content, str):
        content = [{"type": "text", "text": content}]
    if not isinstance(content, Sequence):
        raise ValueError(f"message {i}: content must be a string or a list of items, got {type(content).__name__}")
    for j, item in enumerate(content):
        if not isinstance(item, Mapping) or item.get("type") not in ("text", "image", "video"):
            # The Jinja template would silently drop the item; an unknown item is a bug upstream.
            raise ValueError(f"message {i} item {j}: expected a {{'type': 'text'|'image'|'video', ...}} item, "
                             f"got {item!r}")
        if item["type"] == "text":
            text = item.get("text")
            if not isinstance(text, str):
                raise ValueError(f"message {i} item {j}: text must be a string, got {type(text).__name__}")
            for token in (IMAGE_TOKEN, VIDEO_TOKEN):
                if token in text:
                    raise ValueError(f"message {i} item {j}: text contains {token!r}; give images and videos as "
                                     "{'type': 'image'} / {'type': 'video'} items so their tokens are expanded")
    return list(content)
