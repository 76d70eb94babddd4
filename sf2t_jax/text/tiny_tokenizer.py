"""A tiny Qwen2-style tokenizer trained offline, for tests and the embedded demo.

Same pipeline as the real Qwen2 `tokenizer.json` (NFC normalizer, Qwen2's split regex, byte-level
BPE with no unknown token, byte-level decoder), trained with the `tokenizers` library on a fixed
built-in corpus, so the same `vocab_size` always gives the same file. The Qwen2-VL special tokens
sit at the top of the vocabulary like the real model's, at the ids `models.config.qwen2vl_tiny
(vocab_size=V)` expects:

    V-8 <|im_start|>    V-7 <|endoftext|>   V-6 <|vision_pad|>  V-5 <|image_pad|>
    V-4 <|video_pad|>   V-3 <|vision_start|> V-2 <|vision_end|> V-1 <|im_end|>

(The real Qwen2-VL orders them endoftext, im_start, im_end, ..., vision_start, vision_end,
vision_pad, image_pad, video_pad at 151643-151656; `qwen2vl_tiny` fixed a different order,
which `Tokenizer.check_model_config` verifies.)
"""
from __future__ import annotations

import itertools
import os

import numpy as np
import tokenizers
from tokenizers import decoders, models, normalizers, pre_tokenizers, processors, trainers

# The pre-tokenizer regex of Qwen2's tokenizer.json.
QWEN2_SPLIT_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)

# Top-of-vocabulary order: id = vocab_size - len(TINY_SPECIAL_ORDER) + position.
TINY_SPECIAL_ORDER = (
    "<|im_start|>", "<|endoftext|>", "<|vision_pad|>", "<|image_pad|>",
    "<|video_pad|>", "<|vision_start|>", "<|vision_end|>", "<|im_end|>",
)

_WORDS = """
you are a helpful assistant how many frames does this video contain are these two exactly the same
which region differs between in do appear first appears disappears correct temporal order shuffled
list their positions chronological yes no top left right bottom center middle frame frames to and
the of is it what happens after action changed fast slow normal static speed options answer option
moving pushing pulling putting taking turning making holding showing something from on off into onto
clockwise counterclockwise bigger smaller appearing disappearing camera towards away up down over under
circle square triangle star hexagon diamond red green blue yellow purple orange white black gray
object objects scene background texture shape colour color size angle position visible hidden
question describe sequence video clip image picture step count compare earlier later before first
second third last next previous need reordering adjust or not rearrange rearrangement meaning why
person hand table cup bottle box book phone pen paper cloth bag ball toy spoon plate bowl lid door
drawer something push pull put take turn make hold show move lift drop throw catch open close fill
pour spill tear fold unfold roll slide tilt rotate shake squeeze stack pile hit touch pretending
because while during until when where there here then than that these those with without into within
""".split()

_TEMPLATES = (
    "How many frames does this video contain?",
    "Count the frames shown in this clip.",
    "Are these two frames exactly the same?",
    "Which region differs between the two frames?",
    "In which frames does the {c} {s} appear?",
    "The frames are shuffled. List their positions in chronological order.",
    "Are these frames in the correct temporal order?",
    "How fast is the action in this video?",
    "What changed after the action?",
    "Moving {c} {s} from left to right.",
    "Putting {c} {s} on the table.",
    "frames {a} to {b}",
    "frame {a}",
    "{a}, {b}, {d}, {e}",
    "Answer with the option's letter from the given choices directly. A. B. C. D.",
)


def tiny_corpus(num_lines: int = 4000, seed: int = 0) -> list[str]:
    """The fixed training text: task phrasings, shape/colour words and random word runs."""
    rng = np.random.default_rng(seed)
    colours = ["red", "green", "blue", "yellow", "purple", "orange"]
    shapes = ["circle", "square", "triangle", "star", "hexagon", "diamond"]
    lines = []
    for i in range(num_lines):
        template = _TEMPLATES[i % len(_TEMPLATES)]
        a, b, d, e = (int(v) for v in rng.integers(1, 17, size=4))
        line = template.format(c=colours[i % 6], s=shapes[(i // 6) % 6], a=a, b=b, d=d, e=e)
        words = rng.choice(_WORDS, size=int(rng.integers(4, 12)))
        sentence = " ".join(words).capitalize() + rng.choice([".", "?", "!", ",", ":"])
        role = ("system", "user", "assistant")[i % 3]  # the chat template's role headers
        lines.append(f"{role}\n{line} {sentence}\n")
    return lines


def build_tiny_tokenizer(vocab_size: int = 1000) -> tokenizers.Tokenizer:
    """Trains the tiny tokenizer; special tokens take the top `len(TINY_SPECIAL_ORDER)` ids."""
    num_special = len(TINY_SPECIAL_ORDER)
    bpe_size = vocab_size - num_special
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    if bpe_size <= len(alphabet):
        raise ValueError(f"vocab_size {vocab_size} leaves no room for merges: need > {len(alphabet) + num_special}")
    tok = tokenizers.Tokenizer(models.BPE(unk_token=None, fuse_unk=False, byte_fallback=False))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(tokenizers.Regex(QWEN2_SPLIT_PATTERN), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=bpe_size, min_frequency=1, show_progress=False, initial_alphabet=alphabet, special_tokens=[])
    tok.train_from_iterator(tiny_corpus(), trainer=trainer)
    if tok.get_vocab_size() != bpe_size:
        raise ValueError(f"the tiny corpus yields {tok.get_vocab_size()} BPE tokens, fewer than the {bpe_size} "
                         f"needed for vocab_size {vocab_size}; use a smaller vocab_size")
    tok.add_special_tokens([
        tokenizers.AddedToken(t, special=True, normalized=False, lstrip=False, rstrip=False, single_word=False)
        for t in TINY_SPECIAL_ORDER
    ])
    for offset, token in enumerate(TINY_SPECIAL_ORDER):  # the ids the tiny model config expects
        assert tok.token_to_id(token) == bpe_size + offset, (token, tok.token_to_id(token))
    return tok


def write_tiny_tokenizer(path: str | os.PathLike, vocab_size: int = 1000) -> str:
    """Builds the tiny tokenizer and writes it as a `tokenizer.json` (path may be a directory)."""
    return save_tokenizer_json(build_tiny_tokenizer(vocab_size), path)


def save_tokenizer_json(tok: tokenizers.Tokenizer, path: str | os.PathLike) -> str:
    """Writes `tok` as a `tokenizer.json` at `path`, or inside it when it is a directory; returns the file."""
    path = os.fspath(path)
    if os.path.isdir(path):
        path = os.path.join(path, "tokenizer.json")
    tok.save(path, pretty=False)
    return path


def special_token_ids(vocab_size: int) -> dict[str, int]:
    """{token: id} of the tiny layout for a vocabulary of `vocab_size`."""
    base = vocab_size - len(TINY_SPECIAL_ORDER)
    return {t: base + i for i, t in zip(itertools.count(), TINY_SPECIAL_ORDER)}
