"""SF²T LoRA fine-tuning of LLaVA-NeXT-Video-7B (llava-hf/LLaVA-NeXT-Video-7B-hf layout).

    python launch.py convert --from-hf /ckpt/LLaVA-NeXT-Video-7B-hf --out /ckpt/llava_next_video_7b_native
    python launch.py train --config configs/llava_next_video_7b_lora.py:frames=8 \\
        --init-from /ckpt/llava_next_video_7b_native --workdir gs://bucket/sf2t/llava_next_video_7b_lora

Arguments as configs/sf2t.py's (method, tasks, data, frames, present), except model, which this
file fixes. The recipe is the paper's: LoRA rank 16 on the Llama decoder's projections, the CLIP
tower frozen, the projector and image_newline trained. Frames are shown at the tower's 336 x 336,
one frame per slice pooled to 144 tokens, so 16 frames take 2,304 tokens (max_length grows to
4,096, the decoder's limit). data=videos makes this family's rows (its USER/ASSISTANT template,
1D positions; present=video only: images would be anyres tiles). The FineVidBench scorer shows
it frames the same way (eval `video.size` must be (336, 336)).
"""
from sf2t_jax.defaults.sf2t import fixed_model_config

MODEL = "llava_next_video_7b"


def get_config(arg=None):
    return fixed_model_config(MODEL, arg, __file__)
