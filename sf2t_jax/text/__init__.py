"""Text side of the input: tokenizers, the chat templates, loss masks, position ids.

  tokenizer.py             Tokenizer.from_file(tokenizer.json), Qwen2-VL special token ids by name
  tiny_tokenizer.py        a deterministic tiny Qwen2-style tokenizer for tests and the demo
  tiny_llama_tokenizer.py  a deterministic tiny Llama-style one (LLaVA-NeXT-Video's kind)
  chat.py                  encode_chat: the Qwen2-VL template (input_ids, loss_mask, M-RoPE ids)
  llava_chat.py            encode_llava_chat: LLaVA-NeXT-Video's USER/ASSISTANT template
"""
from sf2t_jax.text.chat import (
    DEFAULT_SYSTEM_PROMPT,
    QWEN2_VL_CHAT_TEMPLATE,
    EncodedChat,
    encode_chat,
    render_chat,
)
from sf2t_jax.text.tiny_llama_tokenizer import build_tiny_llama_tokenizer, write_tiny_llama_tokenizer
from sf2t_jax.text.tiny_tokenizer import TINY_SPECIAL_ORDER, build_tiny_tokenizer, write_tiny_tokenizer
from sf2t_jax.text.tokenizer import SPECIAL_TOKENS, SpecialTokenError, SpecialTokenIds, Tokenizer
