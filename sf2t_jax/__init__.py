"""sf2t_jax: SF²T fine-tuning of Video-LLMs and FineVidBench evaluation in JAX/Flax NNX."""
