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


def _convert(hf_dir, out):
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    return subprocess.run([sys.executable, os.path.join(ROOT, "launch.py"), "convert", "--from-hf", str(hf_dir),
                           "--out", str(out)], capture_output=True, text=True, env=env)


def _refused(proc, expected):
    """Exit non-zero with exactly one line, `expected`, after the logs; no traceback."""
    assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert proc.stderr.rstrip().splitlines()[-1] == expected, proc.stderr[-1000:]
    assert sum(line.startswith("error:") for line in proc.stderr.splitlines()) == 1


def _copy_with(hf_dir, dst, tensors=None, config_bytes=None):
    """A copy of a Hugging Face checkpoint with some tensors or its config.json replaced."""
    import shutil

    from safetensors.numpy import save_file

    shutil.copytree(hf_dir, dst)
    if tensors:
        save_file({**load_file(hf_dir / "model.safetensors"), **tensors}, dst / "model.safetensors",
                  metadata={"format": "pt"})
    if config_bytes is not None:
        (dst / "config.json").write_bytes(config_bytes)
    return dst


def test_convert_refuses_integer_weights_and_bad_config_json_in_one_line(tmp_path):
    import json

    hf_dir = tmp_path / "hf"
    hf_model(qwen2vl_tiny(), seed=9).save_pretrained(hf_dir)
    key = "model.layers.0.mlp.up_proj.weight"
    weight = load_file(hf_dir / "model.safetensors")[key]
    as_int = _copy_with(hf_dir, tmp_path / "int", tensors={key: weight.astype(np.int32)})
    _refused(_convert(as_int, tmp_path / "o1"),
             f"error: {as_int / 'model.safetensors'}: tensor {key!r} has dtype I32; expected a floating-point weight "
             "(F64, F32, F16, BF16)")
    config = json.loads((hf_dir / "config.json").read_text())
    for name, data, expected in [
        ("not_json", b'{"model_type": "qwen2_vl", ', "not valid JSON (Expecting property name enclosed in double"),
        ("latin1", json.dumps({**config, "name": "caf\u00e9"}, ensure_ascii=False).encode("latin-1"),
         "not UTF-8 text (byte 0xe9 at offset"),
        ("bad_key", json.dumps({**config, "vocab_size": "lots"}).encode(),
         "field 'vocab_size' is 'lots'; expected an integer"),
    ]:
        bad = _copy_with(hf_dir, tmp_path / name, config_bytes=data)
        proc = _convert(bad, tmp_path / f"o_{name}")
        _refused(proc, proc.stderr.rstrip().splitlines()[-1])
        assert proc.stderr.rstrip().splitlines()[-1].startswith(f"error: {bad / 'config.json'}: {expected}"), name
        assert not (tmp_path / f"o_{name}").exists()
    assert not (tmp_path / "o1").exists()


def test_convert_warns_once_per_tensor_with_non_finite_values(tmp_path):
    hf_dir = tmp_path / "hf"
    hf_model(qwen2vl_tiny(), seed=9).save_pretrained(hf_dir)
    tensors = load_file(hf_dir / "model.safetensors")
    bad = {}
    for key, value in [("model.layers.1.self_attn.q_proj.bias", np.nan), ("visual.merger.mlp.0.weight", np.inf)]:
        array = tensors[key].copy()
        array.reshape(-1)[:3] = value
        bad[key] = array
    damaged = _copy_with(hf_dir, tmp_path / "nan", tensors=bad)
    proc = _convert(damaged, tmp_path / "native")
    assert proc.returncode == 0, proc.stderr[-3000:]
    warnings = [line for line in proc.stderr.splitlines() if "non-finite" in line]
    assert sorted(w.split(" WARNING ", 1)[1] for w in warnings) == [
        f"{damaged / 'model.safetensors'}: tensor {key!r} has 3 non-finite values of {bad[key].size} "
        f"(NaN {3 if np.isnan(bad[key]).any() else 0}, inf {3 if np.isinf(bad[key]).any() else 0}); converted as stored"
        for key in sorted(bad)]
    restored = load_native(str(tmp_path / "native"))
    assert np.isnan(np.asarray(restored.model.layers[1].self_attn.q_proj.bias[...])).sum() == 3
