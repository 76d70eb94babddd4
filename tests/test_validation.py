"""Bad settings are refused at start-up, by every command, as a user types them: one line that
names the field, a non-zero exit, nothing written (sf2t_jax/validation.py); and the rules
themselves, in-process."""
import os
import subprocess
import sys
import time

import ml_collections
import pytest

from sf2t_jax import validation as v
from sf2t_jax.configuration import ConfigValueError, load_config
from sf2t_jax.errors import InputError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# {out}: what the command would write (workdir, --out, --json, data.dir); it must not appear.
# {missing}: a path that does not exist; {ckpt}, {videos}: existing folders; {bench}: an existing file.
TRAIN = ["train", "--config", "configs/sf2t.py:frames=4", "--workdir", "{out}"]
VIDEOS = ["train", "--config", "configs/sf2t.py:frames=4,data=videos", "--workdir", "{out}"]
PREPARE = ["prepare", "--config", "configs/demo.py", "--config.data.dir={out}", "--no-progress"]
PREVIEW = ["preview", "--config", "configs/sf2t.py:frames=4", "--out", "{out}"]
EVAL = ["eval", "--config", "configs/eval_finevidbench.py", "--checkpoint", "{ckpt}", "--out", "{out}",
        "--config.benchmark={bench}", "--config.videos={videos}"]
PLAN = ["plan", "--config", "configs/sf2t.py:frames=4", "--topology", "cpu:1", "--json", "{out}"]

CASES = [  # (id, argv, text the error line must contain: the field)
    # ---- train: types ------------------------------------------------------------------
    ("steps-bool", TRAIN + ["--config.train.steps=True"], "train.steps"),
    ("steps-float", TRAIN + ["--config.train.steps=2.5"], "train.steps"),
    ("lr-string", TRAIN + ["--config.train.lr=fast"], "train.lr"),
    ("scan-not-bool", TRAIN + ["--config.model.scan_layers=maybe"], "model.scan_layers"),
    ("ici-not-tuple", TRAIN + ["--config.mesh.ici=8"], "mesh.ici"),
    ("unknown-key", TRAIN + ["--config.train.stepz=3"], "train.stepz"),
    # ---- train: ranges -----------------------------------------------------------------
    ("steps-negative", TRAIN + ["--config.train.steps=-1"], "train.steps"),
    ("lr-negative", TRAIN + ["--config.train.lr=-0.001"], "train.lr"),
    ("lr-zero", TRAIN + ["--config.train.lr=0"], "train.lr"),
    ("clip-negative", TRAIN + ["--config.train.clip_norm=-1"], "train.clip_norm"),
    ("warmup-above-1", TRAIN + ["--config.train.warmup_fraction=1.5"], "train.warmup_fraction"),
    ("end-lr-negative", TRAIN + ["--config.train.end_lr_fraction=-0.1"], "train.end_lr_fraction"),
    ("grad-accum-0", TRAIN + ["--config.train.grad_accum=0"], "train.grad_accum"),
    ("b2-1", TRAIN + ["--config.train.b2=1.0"], "train.b2"),
    ("log-every-0", TRAIN + ["--config.log.every=0"], "log.every"),
    ("ckpt-every-0", TRAIN + ["--config.checkpoint.every=0"], "checkpoint.every"),
    ("lora-rank-0", TRAIN + ["--config.lora.rank=0"], "lora.rank"),
    ("lora-dropout-1", TRAIN + ["--config.lora.dropout=1.0"], "lora.dropout"),
    ("devices-negative", TRAIN + ["--config.mesh.devices=-1"], "mesh.devices"),
    ("batch-0", TRAIN + ["--config.input.batch_size=0"], "input.batch_size"),
    ("resolution", TRAIN + ["--config.input.resolution=(50,56)"], "input.resolution"),
    # ---- train: names --------------------------------------------------------------------
    ("dtype", TRAIN + ["--config.model.dtype=float8"], "model.dtype"),
    ("remat", TRAIN + ["--config.model.remat=some"], "model.remat"),
    ("attention", TRAIN + ["--config.model.attention=flash"], "model.attention"),
    ("precision", TRAIN + ["--config.model.precision=ultra"], "model.precision"),
    ("method-arg", ["train", "--config", "configs/sf2t.py:method=half", "--workdir", "{out}"], "method"),
    ("rules", TRAIN + ["--config.mesh.rules=fast"], "mesh.rules"),
    ("signal", TRAIN + ["--config.debug.signal=SIGHUP"], "debug.signal"),
    ("regex", TRAIN + ["--config.params.frozen=('[',)"], "params.frozen"),
    # ---- train: paths ----------------------------------------------------------------------
    ("init-from", TRAIN + ["--init-from", "{missing}"], "init_from"),
    ("source", VIDEOS + ["--config.input.source={missing}", "--config.input.tokenizer=tiny:1000"], "input.source"),
    ("data-dir", VIDEOS + ["--config.input.source=tfds:sf2t_corpus", "--config.input.data_dir={missing}"],
     "input.data_dir"),
    # ---- prepare -------------------------------------------------------------------------
    ("world-height", PREPARE + ["--config.world.height=30"], "height"),
    ("world-bool", PREPARE + ["--config.world.test_clips=True"], "world.test_clips"),
    ("world-parse", PREPARE + ["--config.world.train_clips=many"], "world.train_clips"),
    ("world-codec", PREPARE + ["--config.world.codec=h265"], "codec"),
    ("bench-fraction", PREPARE + ["--config.data.benchmark.shuffled_fraction=2.0"], "shuffled_fraction"),
    ("prepare-source", PREPARE + ["--source", "{missing}"], "--source"),
    ("scale-arg", ["prepare", "--config", "configs/demo.py:scale=huge", "--config.data.dir={out}"], "scale"),
    # ---- preview -------------------------------------------------------------------------
    ("n-0", PREVIEW + ["--n", "0"], "--n"),
    ("n-float", PREVIEW + ["--n", "1.5"], "--n"),
    ("preview-source", ["preview", "--source", "{missing}", "--out", "{out}"], "input.source"),
    ("preview-length", PREVIEW + ["--config.input.max_length=8"], "input.max_length"),
    ("preview-mode", PREVIEW + ["--config.input.mode=speech"], "input.mode"),
    ("preview-seed-bool", PREVIEW + ["--config.input.seed=False"], "input.seed"),
    ("preview-tfds-name", PREVIEW + ["--config.input.source=tfds:nothing", "--config.input.data_dir={videos}"],
     "input.source"),
    # ---- eval ----------------------------------------------------------------------------
    ("benchmark", EVAL + ["--config.benchmark={missing}"], "benchmark"),
    ("videos", EVAL + ["--config.videos={missing}"], "videos"),
    ("checkpoint", EVAL + ["--checkpoint", "{missing}"], "--checkpoint"),
    ("eval-dtype", EVAL + ["--config.dtype=float8"], "dtype"),
    ("eval-batch", EVAL + ["--config.batch_size=0"], "batch_size"),
    ("eval-methods", EVAL + ["--config.methods=guess"], "methods"),
    ("eval-ci", EVAL + ["--config.metrics.ci=1.5"], "ci"),
    ("eval-bool", EVAL + ["--config.max_videos=True"], "max_videos"),
    # ---- convert -------------------------------------------------------------------------
    ("from-hf", ["convert", "--from-hf", "{missing}", "--out", "{out}"], "--from-hf"),
    ("to-hf", ["convert", "--to-hf", "{missing}", "--out", "{out}"], "--to-hf"),
    ("shard-size", ["convert", "--from-hf", "{ckpt}", "--out", "{out}", "--max-shard-gb", "-1"], "--max-shard-gb"),
    ("convert-dtype", ["convert", "--from-hf", "{ckpt}", "--out", "{out}", "--dtype", "float8"], "--dtype"),
    # ---- plan ----------------------------------------------------------------------------
    ("mfu", PLAN + ["--mfu", "1.5"], "--mfu"),
    ("slices", PLAN + ["--slices", "0"], "--slices"),
    ("plan-steps", PLAN + ["--config.train.steps=-5"], "train.steps"),
    ("plan-remat", PLAN + ["--config.model.remat=some"], "model.remat"),
    ("plan-batch-bool", PLAN + ["--config.input.batch_size=True"], "input.batch_size"),
]


@pytest.fixture(scope="module")
def paths(tmp_path_factory):
    root = tmp_path_factory.mktemp("inputs")
    for folder in ("ckpt", "videos"):
        (root / folder).mkdir()
    (root / "bench.jsonl").write_text("")
    return {"ckpt": str(root / "ckpt"), "videos": str(root / "videos"), "bench": str(root / "bench.jsonl"),
            "missing": str(root / "missing")}


@pytest.mark.parametrize("argv, field", [pytest.param(a, f, id=i) for i, a, f in CASES])
def test_a_bad_setting_is_refused_in_one_line_naming_the_field_and_nothing_is_written(paths, tmp_path, argv, field):
    out = tmp_path / "out"
    cmd = [sys.executable, "launch.py", *(a.format(out=out, **paths) for a in argv)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "JAX_PLATFORMS": "cpu"})
    lines = (proc.stdout + proc.stderr).splitlines()
    assert proc.returncode != 0, lines
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    assert field in lines[0], lines
    assert not out.exists() and not os.path.exists(paths["missing"])
    assert time.perf_counter() - t0 < 60  # refused at start-up, not after a model was built


def test_there_are_enough_cases_across_the_commands():
    assert len(CASES) >= 40 and len({i for i, _, _ in CASES}) == len(CASES)
    assert {a[0] for _, a, _ in CASES} >= {"train", "prepare", "preview", "eval", "convert", "plan"}


# ---------------------------------------------------------------------------------------
# The rules
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("rule, good, bad", [
    (v.Int(0), [0, 7], [-1, True, 2.0, "3", None]),
    (v.Int(1, 3), [1, 3], [0, 4]),
    (v.Float(0.0, lo_open=True), [1e-4, 3], [0, 0.0, -1.0, True, "1e-4", float("nan")]),
    (v.FRACTION, [0, 0.5, 1], [-0.1, 1.5, False]),
    (v.Float(0.0, 1.0, hi_open=True), [0.0, 0.999], [1.0]),
    (v.Bool(), [True, False], [0, 1, "true"]),
    (v.Str(("a", "b")), ["a", "b"], ["c", "", 1]),
    (v.Str(nonempty=True), ["x"], ["", 3]),
    (v.Ints(3, -1), [(1, -1, 1), [2, 2, 2]], [(1, 1), (1, 1.0, 1), (True, 1, 1), (1, -2, 1), 8]),
    (v.Strs(), [(), ("a",)], [("a", 1), "a"]),
    (v.Regex(many=True), [(), (r"^a\.", "b")], [("[",), "a", (1,)]),
])
def test_rules_accept_and_refuse_exactly(rule, good, bad):
    for value in good:
        assert rule.problem(value) is None, value
    for value in bad:
        assert rule.problem(value) is not None, value
        with pytest.raises(ConfigValueError, match="^x="):
            rule.check("x", value)


def test_a_failure_is_one_line_naming_field_value_and_expectation():
    with pytest.raises(ConfigValueError) as e:
        v.TRAIN["train.warmup_fraction"].check("train.warmup_fraction", 1.5)
    assert str(e.value) == "train.warmup_fraction=1.5: expected a number >= 0.0 and <= 1.0"
    with pytest.raises(ConfigValueError) as e:
        v.TRAIN["model.remat"].check("model.remat", "some")
    assert str(e.value) == "model.remat='some': expected one of ['none', 'full', 'dots', 'dots_with_no_batch_dims']"
    assert isinstance(e.value, InputError)


def test_paths_must_exist_unless_remote_or_named(tmp_path):
    rule = v.Path("dir")
    for good in ("", str(tmp_path), "gs://bucket/run"):
        assert rule.problem(good) is None
    (tmp_path / "f").write_text("")
    assert rule.problem(str(tmp_path / "f")).endswith("not a folder")
    assert rule.problem(str(tmp_path / "nope")).endswith("no such folder")
    assert v.Path("file", optional=False).problem("") is not None
    assert v.TRAIN["input.tokenizer"].problem("tiny:1000") is None
    assert v.EVAL["tokenizer"].problem("tiny:1000") is None  # eval.loading builds it, as training does
    assert v.TRAIN["input.source"].problem("tfds:sf2t_corpus") is None


def test_patterns_match_one_level():
    table = {"a.*": v.Int(), "a.b": v.Str(), "s.*.x": v.Bool()}
    assert v.rule_for(table, "a.b") == v.Str() and v.rule_for(table, "a.c") == v.Int()
    assert v.rule_for(table, "a.c.d") is None and v.rule_for(table, "s.k.x") == v.Bool()


@pytest.mark.parametrize("spec, table", [
    ("configs/sf2t.py", v.TRAIN), ("configs/sf2t.py:model=qwen2vl_7b,data=videos", v.TRAIN),
    ("configs/demo.py", v.PREPARE), ("configs/eval_finevidbench.py", v.EVAL),
])
def test_every_field_of_the_shipped_configs_has_a_rule_and_every_rule_a_field(spec, table):
    fields = v.leaves(load_config(spec))
    assert [k for k in fields if v.rule_for(table, k) is None] == []
    patterns = {p for p in table if "*" not in p}
    assert sorted(patterns - set(fields)) == []


def test_the_shipped_configs_pass():
    v.check_train(load_config("configs/sf2t.py"))
    v.check_train(load_config("configs/sf2t.py:model=qwen2vl_72b,method=full,present=images,frames=8"))
    v.check_prepare(load_config("configs/demo.py:scale=large"))


def test_a_config_file_value_of_the_wrong_type_is_refused():
    """The rules, not only the override parser: a value set in a file (or by a sweep variant)."""
    values = load_config("configs/sf2t.py").to_dict()
    values["train"]["steps"] = 10.0  # as a config file would declare it
    with pytest.raises(ConfigValueError, match=r"^train.steps=10.0: expected an integer >= 0"):
        v.check_train(ml_collections.ConfigDict(values))
    values = load_config("configs/demo.py").to_dict()
    values["world"]["fps"] = 12.0
    with pytest.raises(ConfigValueError, match=r"^world.fps=12.0: expected an integer"):
        v.check_prepare(ml_collections.ConfigDict(values))


def test_overrides_are_typed_without_coercion():
    config = load_config("configs/sf2t.py", ["train.lr=1", "input.resolution=[56, 56]"])
    assert config.train.lr == 1.0 and isinstance(config.train.lr, float) and config.input.resolution == (56, 56)
    for override, message in [("train.steps=True", "expected int, got 'True'"),
                              ("train.steps=1.5", "expected int, got '1.5'"),
                              ("train.lr=True", "expected float, got 'True'"),
                              ("train.lr='1e-4'", "expected float"),
                              ("model.scan_layers=2", "expected a boolean, got '2'")]:
        with pytest.raises(ConfigValueError, match=message):
            load_config("configs/sf2t.py", [override])


def test_the_name_tables_are_the_ones_the_code_looks_names_up_in():
    from sf2t_jax.eval import loading
    from sf2t_jax.models import layers
    from sf2t_jax.train import model as model_lib

    assert v.TRAIN["model.remat"].choices is layers.REMAT_POLICY_NAMES
    assert list(layers.REMAT_POLICIES) == list(layers.REMAT_POLICY_NAMES)
    assert list(model_lib.DTYPES) == list(v.TRAIN["model.dtype"].choices) == list(loading.DTYPES)
    assert list(model_lib.PRECISIONS) == list(v.TRAIN["model.precision"].choices)
    assert v.TRAIN["model.attention"].choices is layers.ATTENTION_IMPLEMENTATIONS
    assert set(v.TRAIN["mesh.rules"].choices) == set(v.sharding_rules())
