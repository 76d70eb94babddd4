"""Text side of the input: the Qwen2 tokenizer, the Qwen2-VL chat template, loss masks, M-RoPE ids.

  tokenizer.py       Tokenizer.from_file(tokenizer.json), special token ids by name
  tiny_tokenizer.py  a deterministic tiny Qwen2-style tokenizer for tests and the demo
  chat.py            encode_chat: input_ids, loss_mask, position_ids for a conversation
"""
from sf2t_jax.text.chat import (
    DEFAULT_SYSTEM_PROMPT,
    QWEN2_VL_CHAT_TEMPLATE,
    EncodedChat,
    encode_chat,
    render_chat,
)
from sf2t_jax.text.tiny_tokenizer import TINY_SPECIAL_ORDER, build_tiny_tokenizer, write_tiny_tokenizer
from sf2t_jax.text.tokenizer import SPECIAL_TOKENS, SpecialTokenError, SpecialTokenIds, Tokenizer
