"""SF²T LoRA fine-tuning of Qwen2.5-VL-7B-Instruct (the configs/sf2t.py recipe, this model).

    python launch.py convert --from-hf /ckpt/Qwen2.5-VL-7B-Instruct --out /ckpt/qwen25vl_7b_native
    python launch.py train --config configs/qwen25vl_7b_lora.py:data=videos \\
        --config.input.source=/data/ssv2/videos --config.input.tokenizer=/ckpt/Qwen2.5-VL-7B-Instruct \\
        --init-from /ckpt/qwen25vl_7b_native --workdir gs://bucket/sf2t/qwen25vl_7b_lora

Arguments as configs/sf2t.py's (method, tasks, data, frames, present), except model, which this
file fixes. Video positions are on Qwen2.5-VL's absolute time axis at each clip's sampled frame
rate (stream fps x frames shown / frames in the clip; sf2t_jax/input/examples.py), the
processor's default 2 fps where a container states no rate. The pod numerics (scanned, fully rematerialised
layers, bfloat16 frozen weights) are the 7B preset's defaults.
"""
from sf2t_jax.defaults.sf2t import fixed_model_config

MODEL = "qwen25vl_7b"


def get_config(arg=None):
    return fixed_model_config(MODEL, arg, __file__)
