"""Every model family's presets by name, without importing JAX (config validation reads this).

`models/family.py` is the registry with the modules; this is its name table only. A new
family adds its preset table here and its `Family` there.
"""
from __future__ import annotations

from sf2t_jax.models import config as qwen2_vl_config
from sf2t_jax.models.llava_next_video import config as llava_next_video_config
from sf2t_jax.models.qwen2_5_vl import config as qwen2_5_vl_config

# preset name -> (config.json model_type, function returning the config)
PRESETS = {
    **{name: (qwen2_vl_config.MODEL_TYPE, make) for name, make in qwen2_vl_config.PRESETS.items()},
    **{name: (qwen2_5_vl_config.MODEL_TYPE, make) for name, make in qwen2_5_vl_config.PRESETS.items()},
    **{name: (llava_next_video_config.MODEL_TYPE, make) for name, make in llava_next_video_config.PRESETS.items()},
}
