"""Two processes (jax.distributed on localhost) read disjoint shares and build one global batch."""
import json
import os
import socket
import subprocess
import sys
import textwrap

from sf2t_jax.input.fixture_clips import write_clips

CLIPS = 8

WORKER = textwrap.dedent("""
    import json, os, sys
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
    os.environ["JAX_PLATFORMS"] = "cpu"
    import jax
    import numpy as np
    from jax.experimental import multihost_utils

    index, port, corpus, out = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
    jax.distributed.initialize(f"127.0.0.1:{port}", 2, index)
    from sf2t_jax.input import InputConfig, InputPipeline
    from sf2t_jax.parallel.mesh import make_mesh

    config = InputConfig(source=corpus, tokenizer="tiny:1000", batch_size=4, max_length=256,
                         resolution=(56, 56), seed=7, num_epochs=1)
    pipeline = InputPipeline(config)  # this host's place from jax
    mesh = make_mesh(data=1, fsdp=-1)  # 4 devices over 2 processes
    it = pipeline.iterator(mesh)
    samples, records, valid = [], [], []
    for batch in it:
        assert batch["input_ids"].shape == (4, 256) and batch["vision_patches"].shape[0] == 4
        valid.append(int(jax.jit(lambda v: v.sum())(batch["valid"])))  # a computation over both hosts' rows
        rows = multihost_utils.process_allgather(batch["input_ids"], tiled=True)
        mine = [pipeline.prepare(int(g)).example["input_ids"] for g in it.last_meta["sample_index"]]
        assert np.array_equal(rows[2 * index: 2 * index + 2], np.stack(mine))  # my rows sit at my block
        samples += it.last_meta["sample_index"].tolist()
        records += it.last_meta["record_index"].tolist()
    with open(out, "w") as f:
        json.dump({"samples": samples, "records": records, "valid": valid}, f)
    jax.distributed.shutdown()
""")


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_get_disjoint_shares(tmp_path):
    corpus = tmp_path / "corpus"
    write_clips(corpus, CLIPS)
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    procs = [subprocess.Popen([sys.executable, str(script), str(i), str(port), str(corpus), str(tmp_path / f"{i}.json")],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for i in range(2)]
    logs = [p.communicate(timeout=120)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), "\n".join(log[-3000:] for log in logs)
    out = [json.loads((tmp_path / f"{i}.json").read_text()) for i in range(2)]
    for i, o in enumerate(out):
        assert o["samples"] == list(range(i, CLIPS, 2))  # host i owns stream positions i, i+2, ...
        assert o["valid"] == [4, 4]  # both hosts' rows in every global batch
    records = [set(o["records"]) for o in out]
    assert not records[0] & records[1] and records[0] | records[1] == set(range(CLIPS))
