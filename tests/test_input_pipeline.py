"""The grain input pipeline: the batch contract, exact resume (0 and 2 workers), and a model forward."""
import dataclasses
from functools import partial

import grain
import jax
import numpy as np
import pytest
from flax import nnx

from sf2t_jax.fragments import TASK_NAMES, CountConfig, FragmentsConfig
from sf2t_jax.input import BATCH_KEYS, InputConfig, InputPipeline, Prepared
from sf2t_jax.input.fixture_clips import write_clips
from sf2t_jax.models.config import qwen2vl_tiny
from sf2t_jax.models.qwen2_vl import Qwen2VL
from sf2t_jax.models.vision import batch_vision
from sf2t_jax.parallel.mesh import make_mesh
from sf2t_jax.text import Tokenizer, build_tiny_tokenizer
from sf2t_jax.video.patchify import normalize_patches

VOCAB = 1000


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    write_clips(root, 8, num_frames=16, height=64, width=64)
    return str(root)


@pytest.fixture(scope="module")
def tokenizer():
    return Tokenizer(build_tiny_tokenizer(VOCAB), source="tiny")


def _config(corpus, **kw):
    # count shown as images (one slice per frame), every other task as one video: both layouts.
    fragments = FragmentsConfig(count=CountConfig(n_frames=(2, 6), present="images"))
    base = dict(source=corpus, tokenizer="tiny", batch_size=3, max_length=256, resolution=(56, 56), seed=3,
                num_epochs=2, fragments=fragments)
    return InputConfig(**{**base, **kw})


def _pipeline(config, tokenizer):
    return InputPipeline(config, tokenizer=tokenizer, process_index=0, process_count=1)


def _equal(a, b):
    return set(a) == set(b) and all(np.array_equal(np.asarray(a[k]), np.asarray(b[k])) for k in a)


def test_batches_follow_the_contract(corpus, tokenizer):
    config = _config(corpus)
    pipeline = _pipeline(config, tokenizer)
    spec = pipeline.spec
    assert (spec.slices, spec.grid_hw, spec.patches_per_slice) == (8, (4, 4), 16)  # 16 video frames -> 8 slices
    special = tokenizer.special
    it = pipeline.iterator()
    batches, metas = [], []
    for batch in it:
        batches.append(batch)
        metas.append(it.last_meta)
    # 8 clips x 2 epochs = 16 samples in batches of 3: five full batches and one padded.
    assert len(batches) == 6 and it.samples == 16 and it.skips.total == 0
    want = spec.shapes(global_shapes=False)
    seen_tasks, seen_present = set(), set()
    for batch, meta in zip(batches, metas):
        assert tuple(batch) == BATCH_KEYS
        assert {k: (v.shape, v.dtype) for k, v in batch.items()} == {k: (s, d) for k, (s, d) in want.items()}
        for row in range(spec.batch_size):
            g = int(meta["sample_index"][row])
            if g < 0:  # a padding row
                assert batch["valid"][row] == 0 and not batch["attention_mask"][row].any()
                assert not batch["loss_mask"][row].any() and (batch["vision_index"][row] == spec.max_length).all()
                assert not batch["vision_patches"][row].any() and (batch["position_ids"][:, row] == 1).all()
                assert (batch["input_ids"][row] == special.endoftext).all()
                continue
            prepared = pipeline.prepare(g)  # sample g regenerated alone
            assert isinstance(prepared, Prepared) and prepared.record_index == meta["record_index"][row]
            sample, n = prepared.sample, prepared.num_tokens
            seen_tasks.add(sample.task)
            seen_present.add(sample.present)
            ids = batch["input_ids"][row]
            assert batch["valid"][row] == 1 and TASK_NAMES[batch["task_id"][row]] == sample.task
            assert (batch["attention_mask"][row] == (np.arange(spec.max_length) < n)).all()
            assert (ids[n:] == special.endoftext).all() and (batch["position_ids"][:, row, n:] == 1).all()
            # vision_index points exactly at the pad tokens, in order; the rest is padding (L).
            pads = np.nonzero((ids == special.video_pad) | (ids == special.image_pad))[0]
            index = batch["vision_index"][row]
            assert (index[: len(pads)] == pads).all() and (index[len(pads):] == spec.max_length).all()
            used = len(pads) // (spec.patches_per_slice // 4)
            frames = len(sample.frames)
            assert used == (frames if sample.present == "images" else (frames + 1) // 2)
            # Patches: the normalized rows of the used slices, zeros after.
            patches = batch["vision_patches"][row]
            rows = prepared.example["patches"][:used].reshape(-1, 1176)
            assert np.array_equal(patches[:used].reshape(-1, 1176), normalize_patches(rows))
            assert not patches[used:].any()
            # The loss covers exactly the answer and its <|im_end|>.
            target = ids[batch["loss_mask"][row] == 1]
            assert tokenizer.decode(target) == sample.answer + "<|im_end|>"
            assert np.array_equal(batch["input_ids"][row], prepared.example["input_ids"])
    assert seen_present == {"video", "images"} and len(seen_tasks) >= 4, (seen_tasks, seen_present)


@pytest.mark.parametrize("workers", [0, 2])
def test_resume_is_exact(corpus, tokenizer, workers, tmp_path):
    config = _config(corpus, num_epochs=0)  # forever: epochs are crossed (8 clips, batches of 3)
    k, m = 4, 3
    reference_it = _pipeline(config, tokenizer).iterator()
    reference = [next(reference_it) for _ in range(k)]
    reference_state = reference_it.get_state()
    reference += [next(reference_it) for _ in range(m)]

    config = dataclasses.replace(config, workers=workers)
    it = _pipeline(config, tokenizer).iterator()
    first = [next(it) for _ in range(k)]
    state = it.get_state()
    if workers == 0:  # through orbax, as the trainer saves it
        import orbax.checkpoint as ocp

        with ocp.CheckpointManager(tmp_path / "ckpt") as manager:
            manager.save(k, args=ocp.args.Composite(data=grain.checkpoint.CheckpointSave(it)))
            manager.wait_until_finished()
        restored = _pipeline(config, tokenizer).iterator()
        with ocp.CheckpointManager(tmp_path / "ckpt") as manager:
            manager.restore(k, args=ocp.args.Composite(data=grain.checkpoint.CheckpointRestore(restored)))
    else:
        restored = _pipeline(config, tokenizer).iterator()
        restored.set_state(state)
    it.close()
    rest = [next(restored) for _ in range(m)]
    restored.close()
    # Worker processes change neither the stream nor the state; the restored run continues exactly.
    assert state == reference_state
    assert all(_equal(a, b) for a, b in zip(first, reference[:k]))
    assert all(_equal(a, b) for a, b in zip(rest, reference[k:]))
    assert restored.batches == k + m and restored.samples == 3 * (k + m)
    if workers:  # so a run saved with workers resumes without them (and vice versa)
        elsewhere = _pipeline(dataclasses.replace(config, workers=0), tokenizer).iterator()
        elsewhere.set_state(state)
        assert all(_equal(next(elsewhere), b) for b in reference[k:])


def test_global_batch_runs_the_tiny_model(corpus, tokenizer):
    config = _config(corpus, batch_size=8)
    mesh = make_mesh(data=2, fsdp=4)
    pipeline = _pipeline(config, tokenizer)
    it = pipeline.iterator(mesh)
    batch = next(it)
    # The training batch's shardings (sf2t_jax/batch.py): rows over ('data', 'fsdp'), by logical axes.
    assert batch["input_ids"].sharding.spec == jax.sharding.PartitionSpec(("data", "fsdp"), None)
    assert batch["position_ids"].sharding.spec == jax.sharding.PartitionSpec(None, ("data", "fsdp"), None)
    model = Qwen2VL(qwen2vl_tiny(VOCAB), rngs=nnx.Rngs(0))
    tokenizer.check_model_config(model.config)
    graphdef, state = nnx.split(model)

    @partial(jax.jit, static_argnums=(0, 2))
    def forward(graphdef, state, grid_hw, batch):
        logits, _ = nnx.merge(graphdef, state)(batch["input_ids"], batch["position_ids"], batch["attention_mask"],
                                               batch_vision(batch["vision_patches"], grid_hw), batch["vision_index"])
        return logits

    logits = np.asarray(forward(graphdef, state, pipeline.spec.grid_hw, batch))
    assert logits.shape == (8, config.max_length, VOCAB) and np.isfinite(logits).all()
    # Row 0 agrees with the Hugging Face-layout path on the unpadded sample: the scatter of
    # vision features through vision_index lands where the processor layout puts them.
    prepared = pipeline.prepare(int(it.last_meta["sample_index"][0]))
    n, used = prepared.num_tokens, prepared.example["num_slices"]
    rows = normalize_patches(prepared.example["patches"][:used].reshape(-1, 1176))
    gh, gw = pipeline.spec.grid_hw
    kind = prepared.sample.present
    grid = [[used, gh, gw]] if kind == "video" else [[1, gh, gw]] * used
    hf = model.hf_logits(prepared.example["input_ids"][None, :n],
                         **({"pixel_values_videos": rows, "video_grid_thw": grid} if kind == "video"
                            else {"pixel_values": rows, "image_grid_thw": grid}))
    np.testing.assert_allclose(logits[0, :n], hf[0], atol=2e-4, rtol=2e-4)
