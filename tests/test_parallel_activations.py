"""Activation sharding constraints: nothing outside a context, rows kept on their devices inside
one, and the compiled train step's memory per device falling with the device count."""
import jax
import jax.numpy as jnp
import pytest
from jax.sharding import NamedSharding, PartitionSpec

from sf2t_jax.configuration import load_config
from sf2t_jax.parallel.activations import BATCH_LENGTH_EMBED, BATCH_LENGTH_KV_HEADS, activation_sharding, constrain
from sf2t_jax.parallel.mesh import make_mesh
from sf2t_jax.parallel.sharding import named_rules
from sf2t_jax.plan import aot, topology

RULES = named_rules("default")


def test_constrain_is_the_identity_outside_a_context():
    x = jnp.ones((4, 8, 16))
    assert constrain(x, BATCH_LENGTH_EMBED) is x
    with activation_sharding(make_mesh(fsdp=8), RULES):
        pass
    assert constrain(x, BATCH_LENGTH_EMBED) is x  # the context ends with its block


def test_constrain_shards_rows_and_replicates_what_does_not_divide():
    mesh = make_mesh(data=2, fsdp=2, tensor=2)

    @jax.jit
    def f(x, kv):
        with activation_sharding(mesh, RULES):
            return constrain(x * 2, BATCH_LENGTH_EMBED), constrain(kv * 2, BATCH_LENGTH_KV_HEADS)

    x, kv = f(jnp.ones((8, 16, 32)), jnp.ones((8, 16, 3, 4)))  # 3 KV heads do not split over tensor=2
    assert x.sharding.is_equivalent_to(NamedSharding(mesh, PartitionSpec(("data", "fsdp"))), 3)
    assert kv.sharding.is_equivalent_to(NamedSharding(mesh, PartitionSpec(("data", "fsdp"))), 4)
    with activation_sharding(mesh, RULES), pytest.raises(ValueError, match="logical axes"):
        constrain(jnp.ones((8, 16)), BATCH_LENGTH_EMBED)


def _compile(devices: int, constraints: bool = True):
    config = load_config("configs/sf2t.py:model=qwen2vl_small", [
        "model.scan_layers=true", "model.remat=full", "model.frozen_dtype=bfloat16", "checkpoint.every=1000",
        # The whole LM head at once: what scales here is activations, not the gathered head weight
        # (FSDP gathers every weight; the blockwise loss leaves the head's share larger).
        "train.loss_chunk=0", f"mesh.constrain_activations={constraints}"])
    return aot.compile_step(config, topology.parse(f"cpu:{devices}"))


def test_train_step_memory_per_device_falls_with_devices_and_no_activation_is_gathered():
    """qwen2vl_small (4 x 512), batch 16 x 512, 16 frames at 112x112, LoRA, scanned layers, full
    remat, frozen bfloat16 weights, FSDP over N CPU devices: temporaries per device within 1.3/N
    of one device's, and no all-gather / all-reduce of a global-batch activation. The same check
    with the constraints switched off finds such collectives (the check can fail)."""
    temp = {n: _compile(n) for n in (1, 2, 4, 8)}
    print("\ndevices  temp MiB  temp x N / temp(1)  activation collectives")
    for n, r in temp.items():
        print(f"{n:>7} {r.memory['temp'] / 2**20:>9.1f} {r.memory['temp'] * n / temp[1].memory['temp']:>19.2f} "
              f"{len(r.activation_collectives):>23}")
    for n, r in temp.items():
        assert r.memory["temp"] <= 1.3 * temp[1].memory["temp"] / n, (n, r.memory, temp[1].memory)
        assert r.activation_collectives == (), [c.line[:300] for c in r.activation_collectives]
    unconstrained = _compile(8, constraints=False)
    assert unconstrained.activation_collectives and unconstrained.memory["temp"] > 2 * temp[8].memory["temp"]
