"""The batch digest: bit-exact on any sharding, and it moves when a row's content, order or
position within the batch moves."""
import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from sf2t_jax.parallel.mesh import make_mesh
from sf2t_jax.train.digest import batch_digest

DIMS = {"input_ids": 0, "position_ids": 1, "vision_patches": 0, "valid": 0}


def _batch(seed=0, b=8):
    rng = np.random.default_rng(seed)
    return {"input_ids": rng.integers(0, 1000, (b, 16), dtype=np.int32),
            "position_ids": rng.integers(0, 64, (3, b, 16), dtype=np.int32),
            "vision_patches": rng.standard_normal((b, 2, 4, 12), dtype=np.float32),
            "valid": np.ones((b,), np.int32)}


def _digest(batch, mesh=None, dims=DIMS):
    if mesh is not None:  # rows over data x fsdp, as the trainer shards them
        batch = {k: jax.device_put(v, NamedSharding(mesh, PartitionSpec(*([None] * dims[k]), ("data", "fsdp"))))
                 for k, v in batch.items()}
    return np.asarray(jax.jit(lambda x: batch_digest(x, dims))(batch))


def test_digest_is_the_same_on_one_device_and_sharded():
    batch = _batch()
    one = _digest(batch)
    assert one.dtype == np.uint32 and one.shape == (8,) and len(set(one.tolist())) == 8
    np.testing.assert_array_equal(_digest(batch, make_mesh(data=2, fsdp=4)), one)
    np.testing.assert_array_equal(_digest(batch, make_mesh(data=1, fsdp=2, tensor=4)), one)


def test_digest_follows_rows_and_sees_every_change():
    batch = _batch()
    base = _digest(batch)
    order = np.array([4, 5, 6, 7, 0, 1, 2, 3])  # the two halves of the batch swapped
    np.testing.assert_array_equal(_digest({k: np.take(v, order, axis=DIMS[k]) for k, v in batch.items()}), base[order])
    changes = {
        "one float ulp": lambda b: b["vision_patches"].__setitem__((5, 1, 2, 3), np.nextafter(
            b["vision_patches"][5, 1, 2, 3], np.float32(np.inf))),
        "two tokens swapped": lambda b: b["input_ids"].__setitem__((5, [2, 3]), b["input_ids"][5, [3, 2]]),
        "a position id": lambda b: b["position_ids"].__setitem__((2, 5, 9), b["position_ids"][2, 5, 9] + 1),
        "valid flag": lambda b: b["valid"].__setitem__(5, 0),
    }
    for name, change in changes.items():
        changed = {k: v.copy() for k, v in batch.items()}
        change(changed)
        digest = _digest(changed)
        assert digest[5] != base[5], name
        np.testing.assert_array_equal(np.delete(digest, 5), np.delete(base, 5), err_msg=name)
    # The same values in another field give another digest.
    renamed = {("task_id" if k == "valid" else k): v for k, v in batch.items()}
    assert not np.array_equal(_digest(renamed, dims={**DIMS, "task_id": 0}), base)
