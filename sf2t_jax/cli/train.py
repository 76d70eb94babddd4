"""`launch.py train`: SF²T fine-tuning; resumes from the workdir's latest checkpoint.

    python launch.py train --config configs/sf2t.py --workdir /tmp/tiny
    python launch.py train --config configs/sf2t.py:model=qwen2vl_7b,data=videos \\
        --init-from gs://bucket/qwen2vl_7b --workdir gs://bucket/runs/7b --config.train.lr=2e-4

On a TPU pod, run the same command on every worker (scripts/tpu_pod.sh). On a CPU/GPU
cluster, give every process --coordinator HOST:PORT --num-processes N --process-id I (or
SF2T_COORDINATOR / SF2T_NUM_PROCESSES / SF2T_PROCESS_ID).
"""
from __future__ import annotations

import argparse
import logging

HELP = "fine-tune Qwen2-VL with SF²T (LoRA or full), sharded, resumable"


def add_cluster_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("multi-process (CPU/GPU clusters; automatic on TPU pods)")
    group.add_argument("--coordinator", metavar="HOST:PORT", help="process 0's address for jax.distributed")
    group.add_argument("--num-processes", type=int, help="number of processes in the job")
    group.add_argument("--process-id", type=int, help="this process's index, 0..N-1")
    group.add_argument("--local-device-ids", type=lambda s: [int(x) for x in s.split(",")],
                       help="GPU: comma-separated local device ids this process uses")


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, metavar="FILE[:ARG]", help="experiment config, e.g. configs/sf2t.py")
    parser.add_argument("--workdir", required=True, help="checkpoints, metrics, export (local or gs://)")
    parser.add_argument("--init-from", metavar="DIR",
                        help="converted checkpoint to start from (our native dir or a Hugging Face dir); "
                             "sets config.init_from. Ignored when the workdir already has a checkpoint")
    add_cluster_flags(parser)


def start_cluster(args: argparse.Namespace) -> None:
    """jax.distributed first, before anything touches a device."""
    from sf2t_jax.parallel.distributed import ClusterSpec, initialize

    initialize(ClusterSpec.from_env(coordinator=args.coordinator, num_processes=args.num_processes,
                                    process_id=args.process_id, local_device_ids=args.local_device_ids))


def load(args: argparse.Namespace):
    """The typed experiment (`sf2t_jax.experiment.Experiment`): the config file, overrides
    applied, every field checked (no devices touched yet)."""
    from sf2t_jax.configuration import load_config
    from sf2t_jax.experiment import from_config

    overrides = list(args.overrides)
    if args.init_from:
        overrides.append(f"init_from={args.init_from}")
    return from_config(load_config(args.config, overrides))


def run(args: argparse.Namespace) -> None:
    experiment = load(args)  # bad settings stop here: one line, nothing written
    start_cluster(args)
    import jax

    from sf2t_jax.train.loop import train

    if jax.process_index() != 0:
        logging.getLogger().setLevel(logging.WARNING)  # one voice in the logs
    result = train(experiment, args.workdir)  # a config that cannot work: TrainConfigError, one line (cli.main)
    logging.info("train: %s at step %d of %d (%s)", result.status, result.step, result.total_steps, result.workdir)
