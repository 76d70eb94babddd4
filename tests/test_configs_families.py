"""One example experiment file per model family loads, validates and builds that family's
preset; a file that fixes its model refuses another."""
import pytest

from sf2t_jax import validation
from sf2t_jax.configuration import ConfigValueError, load_config
from sf2t_jax.models.presets import PRESETS


@pytest.mark.parametrize("spec, model, model_type", [
    ("configs/sf2t.py:model=qwen2vl_7b", "qwen2vl_7b", "qwen2_vl"),
    ("configs/qwen25vl_7b_lora.py", "qwen25vl_7b", "qwen2_5_vl"),
    ("configs/llava_next_video_7b_lora.py", "llava_next_video_7b", "llava_next_video"),
    ("configs/llava_next_video_7b_lora.py:frames=8,tasks=count+localize", "llava_next_video_7b", "llava_next_video"),
])
def test_family_example_loads_and_validates(spec, model, model_type):
    config = load_config(spec)
    validation.check_train(config)
    assert config.model.name == model and config.method == "lora"
    assert PRESETS[model][0] == model_type
    shape = PRESETS[model][1]()
    layout = shape.slice_layout
    frames = config.input.frame_budget
    # every sample's vision tokens fit the row, in the family's own slice layout
    grid = tuple(r // layout.patch_size for r in config.input.resolution)
    assert layout.slices(frames) * layout.tokens_per_slice(grid) < config.input.max_length
    assert config.input.max_length <= shape.text.max_position_embeddings


def test_llava_example_freezes_clip_and_trains_the_projector():
    config = load_config("configs/llava_next_video_7b_lora.py")
    assert config.params.frozen == (r"^vision_tower\.",)
    assert config.params.extra_trainable == (r"^(multi_modal_projector\.|image_newline$)",)
    assert tuple(config.input.resolution) == (336, 336) and config.input.max_length == 4096


def test_a_fixed_model_file_refuses_another_model():
    with pytest.raises(ConfigValueError, match=r"llava_next_video_7b_lora.py fixes model=llava_next_video_7b"):
        load_config("configs/llava_next_video_7b_lora.py:model=qwen2vl_7b")
