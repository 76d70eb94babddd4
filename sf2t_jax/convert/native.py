"""Our checkpoint format for converted models: `config.json` (Hugging Face layout) + orbax params.

    DIR/config.json    the model shape (Hugging Face layout; `model_type` names the family)
    DIR/params/        an orbax StandardCheckpoint of the parameter tree (paths as in `Qwen2VL`)

Restoring builds the abstract model first and asks orbax for each array in its target
sharding, so no host materialises the full parameters. DIR may be a `gs://` path.
"""
from __future__ import annotations

import json
import logging

import jax
import orbax.checkpoint as ocp
from etils import epath
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from sf2t_jax.convert.hf import abstract_model
from sf2t_jax.convert.safetensors_io import CheckpointError
from sf2t_jax.models import family as families
from sf2t_jax.models.layers import Numerics
from sf2t_jax.models.qwen2_vl import Qwen2VL
from sf2t_jax.parallel.sharding import Rules, variable_shardings

log = logging.getLogger(__name__)


def save_native(model: Qwen2VL, directory: str) -> None:
    """Writes DIR/params (orbax finalises it atomically), then DIR/config.json: a directory
    with a config.json is complete. A complete DIR is refused; the `params` of a save that was
    interrupted before its config.json (no config.json) are removed and written again, so a
    re-run completes an interrupted export or conversion."""
    directory = epath.Path(directory)
    if (directory / "config.json").exists():
        raise FileExistsError(f"{directory} already holds a converted model (config.json); choose a new output "
                              "directory")
    if (directory / "params").exists():
        if jax.process_index() == 0:
            log.warning("%s/params is left from an interrupted save (no config.json): removing it, saving again",
                        directory)
            (directory / "params").rmtree()
        if jax.process_count() > 1:
            from jax.experimental import multihost_utils

            multihost_utils.sync_global_devices(f"save_native {directory}")
    directory.mkdir(parents=True, exist_ok=True)
    params = nnx.state(model, nnx.Param).to_pure_dict()
    # Without OCDBT each array is written as it is serialised; OCDBT batches the whole tree in
    # memory first, which measured 1.7x the weights in peak RSS (benchmarks/convert_memory.py).
    with ocp.Checkpointer(ocp.PyTreeCheckpointHandler(use_ocdbt=False)) as checkpointer:
        checkpointer.save(directory / "params", args=ocp.args.PyTreeSave(params))
    # config.json last: a directory with a config.json is complete.
    (directory / "config.json").write_text(json.dumps(model.config.to_hf_dict(), indent=2))


def load_native(directory: str, numerics: Numerics = Numerics(), *, mesh: Mesh | None = None,
                rules: Rules | None = None) -> Qwen2VL:
    """Restores a model written by `save_native`, each array directly into its sharding."""
    directory = epath.Path(directory)
    if not (directory / "config.json").exists():
        raise FileNotFoundError(f"{directory}: no config.json; not a complete converted checkpoint")
    try:
        text = (directory / "config.json").read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise CheckpointError(f"{directory}/config.json: not UTF-8 text (byte {e.object[e.start]:#04x} at offset "
                              f"{e.start}); expected the model's JSON config") from None
    config = families.config_from_json_text(text, source=f"{directory}/config.json")
    graphdef, abstract_state = nnx.split(abstract_model(config, numerics))
    if mesh is None:
        mesh, rules = Mesh(jax.devices()[:1], ("data",)), ()
    shardings = variable_shardings(abstract_state, mesh, rules) if rules else jax.tree.map(
        lambda _: NamedSharding(mesh, PartitionSpec()), abstract_state, is_leaf=lambda x: isinstance(x, nnx.Variable))
    target = jax.tree.map(lambda v, s: jax.ShapeDtypeStruct(v.shape, v.dtype, sharding=s), abstract_state, shardings,
                          is_leaf=lambda x: isinstance(x, nnx.Variable))
    with ocp.StandardCheckpointer() as checkpointer:
        try:
            restored = checkpointer.restore(directory / "params", target)
        except Exception as e:  # orbax/tensorstore raise many types (even bare Exception) for damaged files
            raise CheckpointError(f"{directory}/params: cannot be restored, the converted checkpoint is damaged or "
                                  f"incomplete ({type(e).__name__}: {_first_line(e)}); convert it again") from e
    nnx.replace_by_pure_dict(abstract_state, restored)
    return nnx.merge(graphdef, abstract_state)


def _first_line(error: Exception, limit: int = 200) -> str:
    """The start of an error's message: tensorstore's run on into pages of its JSON spec."""
    text = str(error).split(" See full TensorStore details")[0].strip()
    line = text.splitlines()[0] if text else ""
    return line if len(line) <= limit else line[:limit] + "..."
