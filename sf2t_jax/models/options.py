"""The names the `model` config section accepts, without importing JAX.

`sf2t_jax.validation` checks a config against these tables before any heavy import;
`models/layers.py` turns each name into its JAX object (`DTYPES`, `PRECISIONS`,
`REMAT_POLICIES`) from the same names, so the two cannot drift.
"""

# Parameter and compute dtypes by name (jax.numpy attribute names).
DTYPE_NAMES = ("float32", "bfloat16", "float16")

# Matmul precision by name -> the jax.lax.Precision member (None: the backend's default).
PRECISION_NAMES = {"default": None, "high": "HIGH", "highest": "HIGHEST"}

# Rematerialisation policies by name -> the jax.checkpoint_policies attribute: what the
# backward pass may keep instead of recomputing.
REMAT_POLICY_NAMES = {
    "none": None,  # no remat: keep every activation (fastest, most memory)
    "full": "nothing_saveable",  # recompute each layer entirely
    "dots": "dots_saveable",  # keep matmul outputs
    "dots_with_no_batch_dims": "dots_with_no_batch_dims_saveable",  # keep weight matmuls
}

# Names of `models/attention.py`'s implementations.
ATTENTION_IMPLEMENTATIONS = ("auto", "xla", "splash", "cudnn")
