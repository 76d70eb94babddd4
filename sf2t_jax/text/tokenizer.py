"""A Hugging Face `tokenizer.json` (Qwen2's, or Llama's for LLaVA-NeXT-Video), and the Qwen2-VL
special tokens when the vocabulary is Qwen2's.

`Tokenizer.from_file(path)` wraps `tokenizers.Tokenizer` (the Rust library transformers' fast
tokenizers use, so ids are identical) and looks the special tokens up by name. Encoding never
adds BOS/EOS (the chat templates write their own markers) and, like transformers, treats
special-token strings inside text as those tokens. A vocabulary with none of the Qwen2-VL
special tokens is another family's (`special` then raises); one with only some of them is a
broken Qwen2 file, refused when loaded.
"""
from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Sequence

import numpy as np
import tokenizers

from sf2t_jax.errors import InputError

# Name -> token string of the special tokens Qwen2-VL needs.
SPECIAL_TOKENS = {
    "endoftext": "<|endoftext|>",  # pad token; bos_token_id in config.json
    "im_start": "<|im_start|>",
    "im_end": "<|im_end|>",  # end of a turn; eos
    "vision_start": "<|vision_start|>",
    "vision_end": "<|vision_end|>",
    "vision_pad": "<|vision_pad|>",  # config.json `vision_token_id`; unused by the template
    "image_pad": "<|image_pad|>",
    "video_pad": "<|video_pad|>",
}


class SpecialTokenError(InputError, KeyError):
    """A tokenizer.json lacks a special token Qwen2-VL needs."""

    def __str__(self):  # KeyError would quote the message
        return str(self.args[0])


@dataclasses.dataclass(frozen=True)
class SpecialTokenIds:
    """Ids of the Qwen2-VL special tokens in one vocabulary."""

    endoftext: int
    im_start: int
    im_end: int
    vision_start: int
    vision_end: int
    vision_pad: int
    image_pad: int
    video_pad: int


class Tokenizer:
    """A Qwen2(-VL) byte-level BPE tokenizer.

    Attributes:
      special: `SpecialTokenIds` of this vocabulary.
      vocab_size: number of ids (including added tokens).
      source: where it was loaded from (for error messages).
    """

    def __init__(self, tokenizer: tokenizers.Tokenizer, source: str = "<in memory>"):
        self._tok = tokenizer
        self.source = source
        ids = {field: tokenizer.token_to_id(token) for field, token in SPECIAL_TOKENS.items()}
        missing = [SPECIAL_TOKENS[field] for field, token_id in ids.items() if token_id is None]
        if missing and len(missing) < len(SPECIAL_TOKENS):
            raise SpecialTokenError(
                f"{source}: special token {missing[0]!r} is not in the vocabulary; a Qwen2-VL tokenizer.json "
                f"must define all of {', '.join(SPECIAL_TOKENS.values())}")
        self._special = None if missing else SpecialTokenIds(**ids)
        self.vocab_size = tokenizer.get_vocab_size(with_added_tokens=True)

    @property
    def special(self) -> SpecialTokenIds:
        """The Qwen2-VL special token ids; SpecialTokenError for another family's vocabulary."""
        if self._special is None:
            raise SpecialTokenError(
                f"{self.source}: not a Qwen2 vocabulary (it has none of {', '.join(SPECIAL_TOKENS.values())}); "
                "Qwen-VL models need their own tokenizer.json")
        return self._special

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> "Tokenizer":
        """Reads a `tokenizer.json`, or a directory holding one (a Hugging Face checkpoint)."""
        path = os.fspath(path)
        if os.path.isdir(path):
            path = os.path.join(path, "tokenizer.json")
        if not os.path.exists(path):
            raise FileNotFoundError(f"no tokenizer.json at {path}")
        try:
            tok = tokenizers.Tokenizer.from_file(path)
        except Exception as e:  # the Rust side raises a bare Exception on malformed JSON
            raise InputError(f"{path}: not a valid tokenizer.json ({e})") from None
        return cls(tok, source=path)

    @property
    def backend(self) -> tokenizers.Tokenizer:
        """The wrapped `tokenizers.Tokenizer` (e.g. for transformers' `tokenizer_object=`)."""
        return self._tok

    def encode(self, text: str) -> np.ndarray:
        """Text -> (L,) int32 ids; no BOS/EOS added."""
        return np.asarray(self._tok.encode(text, add_special_tokens=False).ids, np.int32)

    def encode_batch(self, texts: Sequence[str]) -> list[np.ndarray]:
        return [np.asarray(e.ids, np.int32) for e in self._tok.encode_batch(list(texts), add_special_tokens=False)]

    def decode(self, ids: Iterable[int], skip_special_tokens: bool = False) -> str:
        return self._tok.decode([int(i) for i in ids], skip_special_tokens=skip_special_tokens)

    def token_to_id(self, token: str) -> int:
        token_id = self._tok.token_to_id(token)
        if token_id is None:
            raise SpecialTokenError(f"{self.source}: token {token!r} is not in the vocabulary")
        return token_id

    def id_to_token(self, token_id: int) -> str | None:
        return self._tok.id_to_token(int(token_id))

    def check_model_config(self, config) -> None:
        """Raises if a model config's token ids disagree with this vocabulary.

        Qwen-VL configs (M-RoPE layouts): the image/video/vision_start/vision_end/vision pad ids.
        LLaVA-NeXT-Video: the `<image>`, `<video>`, `<s>` and `</s>` ids where the vocabulary has
        those tokens (its template writes the config's ids itself). Both: the vocabulary size (the embedding may be
        larger than the vocabulary, never smaller).
        """
        if config.slice_layout.mrope:
            s = self.special
            pairs = [
                ("image_token_id", config.image_token_id, s.image_pad, "<|image_pad|>"),
                ("video_token_id", config.video_token_id, s.video_pad, "<|video_pad|>"),
                ("vision_start_token_id", config.vision_start_token_id, s.vision_start, "<|vision_start|>"),
                ("vision_end_token_id", config.vision_end_token_id, s.vision_end, "<|vision_end|>"),
                ("vision_token_id", config.vision_token_id, s.vision_pad, "<|vision_pad|>"),
            ]
            self._check_pairs(pairs, "model config")
        else:
            from sf2t_jax.text.llava_chat import LlavaTokens  # it imports this module

            self.check_named_ids(LlavaTokens.from_config(config).named_ids(), "model config")
        if config.text.vocab_size < self.vocab_size:
            raise InputError(f"model vocab_size {config.text.vocab_size} is smaller than the {self.vocab_size} ids "
                             f"of {self.source}")

    def check_named_ids(self, expected: dict[str, tuple[str, int]], what: str) -> None:
        """InputError when a token the vocabulary has sits at another id than `what` says.

        expected: {field: (token, id)}; tokens the vocabulary lacks are not checked (a template
        that writes those ids itself needs no string for them)."""
        self._check_pairs([(field, want, self._tok.token_to_id(token), token)
                           for field, (token, want) in expected.items() if self._tok.token_to_id(token) is not None],
                          what)

    def _check_pairs(self, pairs, what: str) -> None:
        wrong = [f"{field}={have} but {token} is {want}" for field, have, want, token in pairs if have != want]
        if wrong:
            raise InputError(f"{what} disagrees with {self.source}: " + "; ".join(wrong))
