"""SF²T fine-tuning of Qwen2-VL: one experiment file, from a CPU smoke run to a TPU pod.

    python launch.py train --config configs/sf2t.py --workdir /tmp/sf2t_tiny        # tiny, synthetic
    python launch.py train --config configs/sf2t.py:model=qwen2vl_7b,data=videos \\
        --config.input.source=/data/ssv2/videos --config.input.tokenizer=/ckpt/qwen2vl_7b \\
        --init-from /ckpt/qwen2vl_7b_native --workdir gs://bucket/sf2t/7b_lora

Arguments (`configs/sf2t.py:key=value,...`): model (qwen2vl_tiny | qwen2vl_small | qwen2vl_2b |
qwen2vl_7b | qwen2vl_72b), method (lora | full), tasks ('+'-separated fragment tasks), data
(synthetic | videos), frames (most frames per sample), present (video | images).

The recipe (specs/sf2t.md §2): LoRA rank 16, alpha 32 on the LLM's q/k/v/o/gate/up/down; the
vision tower frozen, the merger trained; AdamW, lr 1e-4, 3% warmup, cosine decay; one epoch;
loss on answer tokens only. Every field and argument is documented in sf2t_jax/defaults/sf2t.py,
which the package (an installed one too) and the demo build on; copy this file to vary an
experiment, or override fields with --config.KEY=VALUE.
"""
# The names ablation files read from here (configs/ablations/*.py).
from sf2t_jax.defaults.sf2t import LLM_PROJECTIONS, MERGER, SIZES, TASKS, VISION_TOWER, sf2t_config

__all__ = ["LLM_PROJECTIONS", "MERGER", "SIZES", "TASKS", "VISION_TOWER", "get_config"]


def get_config(arg=None):
    return sf2t_config(arg)
