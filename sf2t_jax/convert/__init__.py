"""Hugging Face checkpoint conversion, both ways (public API: `from_hf`, `to_hf`)."""
from sf2t_jax.convert.hf import abstract_model, from_hf, to_hf

__all__ = ["abstract_model", "from_hf", "to_hf"]
