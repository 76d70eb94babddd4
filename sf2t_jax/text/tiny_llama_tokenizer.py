"""A tiny Llama-style tokenizer trained offline: the shape of LLaVA-NeXT-Video's `tokenizer.json`.

The Hub's Llama 2 / Vicuna `tokenizer.json` (converted from SentencePiece, the "legacy" form
llava-hf ships) has no pre-tokenizer and no byte-level alphabet:

    normalizer      Prepend("▁") then Replace(" ", "▁")     every space is a word-start marker
    model           BPE over "▁"-marked pieces, `<unk>`, byte fallback (`<0x00>`..`<0xFF>`)
    decoder         Replace("▁", " "), ByteFallback, Fuse, Strip(one leading space)
    post-processor  `<s>` before the text (transformers' LlamaTokenizerFast adds it)
    ids             <unk> 0, the 256 byte tokens 1..256, then merges; at the top the ids
                    `llava_next_video_tiny(V)` expects: <s> V-4, <video> V-3, <image> V-2,
                    </s> V-1 (the Hub file has <s> 1, </s> 2, <image> 32000: the ids differ,
                    the pipeline is the same)

Merges are learned on the tiny corpus split at word starts, as SentencePiece does, so no merge
crosses a "▁". Every run of text between two special tokens gets its own "▁" prefix (the
normalizer runs per segment), which is how transformers' fast tokenizer reads a LLaVA prompt.
"""
from __future__ import annotations

import json
import os

import tokenizers
from tokenizers import decoders, models, normalizers, pre_tokenizers, processors, trainers

from sf2t_jax.text.tiny_tokenizer import save_tokenizer_json, tiny_corpus

WORD_START = "\u2581"  # "▁", SentencePiece's space marker
UNKNOWN = "<unk>"  # id 0
BYTE_TOKENS = tuple(f"<0x{b:02X}>" for b in range(256))  # ids 1..256
TOP_TOKENS = ("<s>", "<video>", "<image>", "</s>")  # ids V-4 .. V-1, as llava_next_video_tiny(V) has them


def build_tiny_llama_tokenizer(vocab_size: int = 1000) -> tokenizers.Tokenizer:
    """Trains the tiny Llama-style tokenizer (module docstring) with `vocab_size` ids in all."""
    fixed = 1 + len(BYTE_TOKENS) + len(TOP_TOKENS)
    merged_size = vocab_size - fixed
    if merged_size <= 0:
        raise ValueError(f"vocab_size {vocab_size} leaves no room for merges: need > {fixed}")
    normalizer = normalizers.Sequence([normalizers.Prepend(WORD_START), normalizers.Replace(" ", WORD_START)])
    # Learn merges on pieces that each start at a "▁", as SentencePiece's whitespace split does.
    learner = tokenizers.Tokenizer(models.BPE(unk_token=UNKNOWN))
    learner.normalizer = normalizer
    learner.pre_tokenizer = pre_tokenizers.Split(WORD_START, behavior="merged_with_next")
    trainer = trainers.BpeTrainer(vocab_size=merged_size, min_frequency=1, show_progress=False, special_tokens=[])
    learner.train_from_iterator(tiny_corpus(), trainer=trainer)
    vocab = {t: i for i, t in enumerate((UNKNOWN,) + BYTE_TOKENS)}
    for token, _ in sorted(learner.get_vocab().items(), key=lambda kv: kv[1]):
        vocab.setdefault(token, len(vocab))
    if len(vocab) != vocab_size - len(TOP_TOKENS):
        raise ValueError(f"the tiny corpus yields {len(vocab) - 1 - len(BYTE_TOKENS)} merged tokens beside the bytes; "
                         f"vocab_size {vocab_size} needs {merged_size}: use a smaller vocab_size")
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in _merges_of(learner)]
    tok = tokenizers.Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token=UNKNOWN, fuse_unk=True,
                                          byte_fallback=True))
    tok.normalizer = normalizer
    tok.decoder = decoders.Sequence([decoders.Replace(WORD_START, " "), decoders.ByteFallback(), decoders.Fuse(),
                                     decoders.Strip(" ", 1, 0)])
    tok.add_special_tokens([tokenizers.AddedToken(t, special=True, normalized=False) for t in (UNKNOWN,) + TOP_TOKENS])
    ids = [tok.token_to_id(t) for t in (UNKNOWN,) + TOP_TOKENS]
    if ids != [0] + list(range(vocab_size - len(TOP_TOKENS), vocab_size)) or tok.get_vocab_size() != vocab_size:
        raise AssertionError(f"tiny Llama tokenizer ids {ids}, size {tok.get_vocab_size()}: the layout broke")
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B",
                                                       special_tokens=[("<s>", ids[1])])
    return tok


def _merges_of(tok: tokenizers.Tokenizer) -> list:
    """The learned merges, in rank order (the model's JSON is the only public view of them)."""
    return json.loads(tok.to_str())["model"]["merges"]


def write_tiny_llama_tokenizer(path: str | os.PathLike, vocab_size: int = 1000) -> str:
    """Builds the tiny Llama-style tokenizer and writes it as a `tokenizer.json` (path may be a directory)."""
    return save_tokenizer_json(build_tiny_llama_tokenizer(vocab_size), path)
