"""`launch.py sweep`: run every variant of an ablation file, one after another, into sub-workdirs.

    python launch.py sweep configs/ablations/lora_rank.py --workdir /tmp/abl --dry-run   # list
    python launch.py sweep configs/ablations/lora_rank.py --workdir gs://b/abl --config.train.steps=200

An ablation file defines `get_config(arg)` (the base experiment) and `sweep()`: a list of
variants, each a dict with
  name     the variant's sub-workdir (WORKDIR/NAME)
  arg      optional: config-file arguments for this variant ('present=images'), merged over the
           file's own (`FILE:ARG`)
  a.b.c    field overrides (values, not strings)
  stages   optional: a list of stage dicts (each with `name` and overrides) run in order into
           WORKDIR/NAME/STAGE; `init_from: '@previous'` starts a stage from the previous
           stage's export (its trained model, LoRA merged)
Command-line `--config.a.b=v` overrides apply to every variant, last (they win). Re-running
the same command skips finished variants and resumes the interrupted one.
"""
from __future__ import annotations

import argparse
import logging
import re
from typing import Any

from sf2t_jax.cli.train import add_cluster_flags, start_cluster

HELP = "run the variants of an ablation file (configs/ablations/*.py) one after another"
PREVIOUS = "@previous"
_RESERVED = ("name", "arg", "stages")


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("ablation", metavar="FILE[:ARG]", help="ablation file, e.g. configs/ablations/lora_rank.py")
    parser.add_argument("--workdir", required=True, help="parent workdir: one sub-workdir per variant (local or gs://)")
    parser.add_argument("--dry-run", action="store_true", help="list the variants and their overrides; run nothing")
    parser.add_argument("--only", default="", help="comma-separated variant names to run (default: all)")
    parser.add_argument("--init-from", metavar="DIR", help="converted checkpoint every variant starts from")
    # No --config of its own (the ablation file is the config); declaring it lets launch.py
    # accept the --config.a.b=v overrides that apply to every variant.
    parser.add_argument("--config", default=None, help=argparse.SUPPRESS)
    add_cluster_flags(parser)


def _merge_args(base: str, extra: str) -> str:
    """'model=a,frames=8' + 'frames=16' -> 'model=a,frames=16' (later keys win)."""
    merged: dict[str, str] = {}
    for part in (base, extra):
        for item in filter(None, (part or "").split(",")):
            key, _, value = item.partition("=")
            merged[key] = value
    return ",".join(f"{k}={v}" for k, v in merged.items())


def _spec(path: str, arg: str) -> str:
    return f"{path}:{arg}" if arg else path


def plan(ablation: str, workdir: str, *, only: str = "", init_from: str | None = None) -> list[dict[str, Any]]:
    """The runs of a sweep in order: dicts with name, workdir, arg (the config spec) and
    overrides (dotted key -> value), init_from_previous (True when init_from is the previous
    stage's export, written by that stage); stages expand into one run each."""
    from sf2t_jax.configuration import load_sweep

    path, _, file_arg = ablation.partition(":")
    variants = load_sweep(path)
    names = [v.get("name") for v in variants]
    for v, name in zip(variants, names):
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.+-]+", name):
            raise SystemExit(f"error: {path}: variant name {name!r} must be a non-empty [A-Za-z0-9_.+-] string")
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise SystemExit(f"error: {path}: duplicate variant names {dupes}")
    wanted = [n for n in only.split(",") if n]
    unknown = sorted(set(wanted) - set(names))
    if unknown:
        raise SystemExit(f"error: --only {','.join(unknown)}: no such variant; variants: {', '.join(names)}")
    runs = []
    for variant in variants:
        if wanted and variant["name"] not in wanted:
            continue
        base_dir = f"{workdir.rstrip('/')}/{variant['name']}"
        common = {k: v for k, v in variant.items() if k not in _RESERVED}
        arg = _merge_args(file_arg, variant.get("arg", ""))
        stages = variant.get("stages") or [{"name": None}]
        previous = None
        for stage in stages:
            overrides = {**common, **{k: v for k, v in stage.items() if k not in _RESERVED}}
            if init_from and "init_from" not in overrides:
                overrides["init_from"] = init_from
            from_previous = overrides.get("init_from") == PREVIOUS
            if from_previous:
                if previous is None:
                    raise SystemExit(f"error: {path}: variant {variant['name']!r}: the first stage cannot start "
                                     f"from {PREVIOUS}")
                overrides["init_from"] = f"{previous}/export"
            run_dir = base_dir if stage["name"] is None else f"{base_dir}/{stage['name']}"
            runs.append({"name": variant["name"] + ("" if stage["name"] is None else f"/{stage['name']}"),
                         "workdir": run_dir, "spec": _spec(path, _merge_args(arg, stage.get("arg", ""))),
                         "overrides": overrides, "init_from_previous": from_previous})
            previous = run_dir
    return runs


def _config(r: dict[str, Any], overrides: list[str]):
    """One run's config: the file, the variant's overrides, the command line's; every field checked."""
    from sf2t_jax import validation
    from sf2t_jax.configuration import apply_overrides, load_config, set_by_path
    from sf2t_jax.errors import InputError

    try:
        config = load_config(r["spec"])
        for key, value in r["overrides"].items():
            set_by_path(config, key, value)
        apply_overrides(config, overrides)
        probe = config
        if r.get("init_from_previous"):  # the previous stage writes that export; it need not exist yet
            probe = config.copy_and_resolve_references()
            probe.init_from = ""
        validation.check_train(probe)
    except InputError as e:  # unknown key or bad value in the ablation file
        raise InputError(f"sweep run {r['name']}: {e}") from None
    return config


def run(args: argparse.Namespace) -> None:
    runs = plan(args.ablation, args.workdir, only=args.only, init_from=args.init_from)
    for i, r in enumerate(runs):
        extra = ", ".join(f"{k}={v!r}" for k, v in r["overrides"].items())
        print(f"[{i + 1}/{len(runs)}] {r['name']}: --config {r['spec']} {extra} -> {r['workdir']}", flush=True)
    configs = [_config(r, args.overrides) for r in runs]  # every variant checked before the first trains
    if args.dry_run:
        return
    start_cluster(args)
    from sf2t_jax.errors import InputError
    from sf2t_jax.train.loop import train

    for i, (r, config) in enumerate(zip(runs, configs)):
        logging.info("sweep: run %d/%d: %s", i + 1, len(runs), r["name"])
        try:
            result = train(config, r["workdir"])
        except InputError as e:  # the message names the field; this names the run
            raise InputError(f"sweep run {r['name']}: {e}") from None
        if result.status == "preempted":
            logging.warning("sweep: preempted in %s; run the same command to resume", r["name"])
            return
    logging.info("sweep: %d runs done under %s", len(runs), args.workdir)
