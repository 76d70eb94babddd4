"""Video input: decode (PyAV), frame sampling and speed variants, resize, Qwen2-VL patchify.

Modules, in the order data flows through them:
  decode.py     decode_video / probe_video / verify_video (every frame), VideoDecodeError(reason, path)
  sampling.py   index plans: uniform (qwen-vl-utils), random sorted, windows, speed variants
  resize.py     smart_resize, fixed resolution buckets, PIL bicubic resize
  patchify.py   normalize + patchify in Qwen2-VL row order; the (gt, gh*gw, 1176) slice layout
  processor.py  resize + normalize + patchify, equal to transformers 4.49's processor
  encode.py     frames -> mp4 / webm / mkv / avi bytes (synthetic clips, tests)
"""
from sf2t_jax.video.encode import encode_video
from sf2t_jax.video.decode import (REASONS, DecodedVideo, VideoDecodeError, VideoInfo, decode_video, probe_video,
                                  verify_video)
from sf2t_jax.video.patchify import (
    OPENAI_CLIP_MEAN,
    OPENAI_CLIP_STD,
    from_slices,
    normalize,
    normalize_patches,
    num_merged_tokens,
    patchify_image,
    patchify_video,
    to_slices,
)
from sf2t_jax.video.processor import preprocess_image, preprocess_video, target_size
from sf2t_jax.video.resize import check_bucket, nearest_bucket, resize_frames, smart_resize
from sf2t_jax.video.sampling import (
    SPEEDS,
    NotEnoughFrames,
    centered_speed_indices,
    qwen_num_frames,
    random_sorted_indices,
    random_speed_indices,
    random_window_indices,
    sampled_fps,
    speed_indices,
    speed_span,
    uniform_indices,
    window_indices,
)
