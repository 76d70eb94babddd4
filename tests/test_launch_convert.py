"""`launch.py convert` both ways, through our orbax format, restoring into a mesh."""
import os
import subprocess
import sys

import numpy as np
from safetensors.numpy import load_file

from configs.sharding import DEFAULT_RULES
from qwen_reference import hf_model
from sf2t_jax.convert import from_hf
from sf2t_jax.convert.native import load_native
from sf2t_jax.models.config import qwen2vl_tiny
from sf2t_jax.parallel.mesh import make_mesh

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _launch(*args):
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "launch.py"), *args], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc


def test_convert_hf_to_native_and_back_is_lossless(tmp_path):
    hf_dir, native, back = tmp_path / "hf", tmp_path / "native", tmp_path / "back"
    hf_model(qwen2vl_tiny(), seed=9).save_pretrained(hf_dir)
    _launch("convert", "--from-hf", str(hf_dir), "--out", str(native))
    assert sorted(os.listdir(native)) == ["config.json", "params"]
    _launch("convert", "--to-hf", str(native), "--out", str(back))
    original, exported = load_file(hf_dir / "model.safetensors"), load_file(back / "model.safetensors")
    assert original.keys() == exported.keys()
    for key in original:
        np.testing.assert_array_equal(exported[key], original[key], err_msg=key)

    # An interrupted conversion (params finalised, config.json not yet written) is redone by the
    # re-run; a complete one is refused in one line.
    (native / "config.json").rename(tmp_path / "config.json.bak")
    (native / "params" / "_METADATA").write_text("truncated")  # whatever the interrupted save left
    again = _launch("convert", "--from-hf", str(hf_dir), "--out", str(native))
    assert "left from an interrupted save" in again.stderr and sorted(os.listdir(native)) == ["config.json", "params"]
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    refused = subprocess.run([sys.executable, os.path.join(ROOT, "launch.py"), "convert", "--from-hf", str(hf_dir),
                              "--out", str(native)], capture_output=True, text=True, env=env)
    assert refused.returncode != 0 and "already holds a converted model" in refused.stderr
    assert "Traceback" not in refused.stderr

    restored = load_native(str(native), mesh=make_mesh(fsdp=2, tensor=4), rules=DEFAULT_RULES)
    kernel = restored.model.layers[0].mlp.gate_proj.kernel[...]
    assert len(kernel.sharding.device_set) == 8
    np.testing.assert_array_equal(np.asarray(kernel), np.asarray(from_hf(hf_dir).model.layers[0].mlp.gate_proj.kernel[...]))


def test_convert_reports_bad_input_clearly(tmp_path):
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "launch.py"), "convert", "--from-hf", str(tmp_path),
                           "--out", str(tmp_path / "o")], capture_output=True, text=True, env=env)
    assert proc.returncode != 0
    assert "no config.json" in proc.stderr
