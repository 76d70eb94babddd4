"""The names the training config accepts for its enumerated fields, without importing JAX
(`sf2t_jax.validation` checks them before anything heavy is imported)."""

METHODS = ("lora", "full")  # method: train LoRA adapters, or every parameter not frozen
DATA_SOURCES = ("synthetic", "videos")  # data.source
SIGNALS = ("SIGTERM", "SIGKILL", "SIGINT")  # debug.signal (fault injection)
