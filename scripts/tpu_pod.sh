#!/usr/bin/env bash
# Run the same command on every worker of a Cloud TPU VM (a pod slice such as v5litepod-16).
#
#   scripts/tpu_pod.sh NAME ZONE copy                  copy this checkout to ~/sf2t-jax on every worker
#   scripts/tpu_pod.sh NAME ZONE install               pip install it there (jax[tpu], same jax version)
#   scripts/tpu_pod.sh NAME ZONE run   -- CMD ARGS...  run CMD in ~/sf2t-jax on every worker, attached
#   scripts/tpu_pod.sh NAME ZONE start -- CMD ARGS...  the same, detached (nohup; log ~/sf2t-jax.log)
#   scripts/tpu_pod.sh NAME ZONE logs                  the last lines of every worker's log
#   scripts/tpu_pod.sh NAME ZONE stop                  SIGTERM the detached command (it saves, exits 0)
#
# Every worker runs the identical command; JAX finds the coordinator and its own process index
# from the TPU metadata (launch.py initialises jax.distributed), so no per-worker flags exist.
# Environment: PROJECT (gcloud --project), REMOTE_DIR (default sf2t-jax, relative to $HOME),
# WORKERS (default all; e.g. 0 for one worker), DRY_RUN=1 (print the gcloud commands only).
set -euo pipefail

usage() { sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-2}"; }
[[ $# -ge 3 ]] || usage
NAME=$1 ZONE=$2 ACTION=$3
shift 3
REMOTE_DIR=${REMOTE_DIR:-sf2t-jax}
WORKERS=${WORKERS:-all}
JAX_VERSION=0.10.2  # pyproject.toml pins jax; libtpu must match it
REPO=$(cd "$(dirname "$0")/.." && pwd)
GCLOUD=(gcloud compute tpus tpu-vm)
FLAGS=(--zone "$ZONE" --worker "$WORKERS")
[[ -n "${PROJECT:-}" ]] && FLAGS+=(--project "$PROJECT")

do_run() {  # print, or run, one command
  if [[ "${DRY_RUN:-0}" == 1 ]]; then printf '%q ' "$@"; echo; else "$@"; fi
}

on_workers() {  # on_workers 'shell command' : run it on every selected worker
  do_run "${GCLOUD[@]}" ssh "$NAME" "${FLAGS[@]}" --command "$1"
}

user_command() {  # the words after '--', quoted for the remote shell
  [[ $# -ge 1 && "$1" == "--" ]] || { echo "error: $ACTION needs '-- COMMAND ...'" >&2; exit 2; }
  shift
  [[ $# -ge 1 ]] || { echo "error: empty command after '--'" >&2; exit 2; }
  printf '%q ' "$@"
}

case "$ACTION" in
  copy)
    # The working tree's files that git tracks or would track (not the venv, not ignored
    # workdirs), uncommitted edits included: the same code on every worker.
    archive=$(mktemp -t sf2t-XXXX.tar.gz)
    trap 'rm -f "$archive"' EXIT
    (cd "$REPO" && git ls-files -z --cached --others --exclude-standard | tar -czf "$archive" --null -T -)
    do_run "${GCLOUD[@]}" scp "$archive" "$NAME:/tmp/sf2t-jax.tar.gz" "${FLAGS[@]}"
    on_workers "rm -rf ~/$REMOTE_DIR && mkdir -p ~/$REMOTE_DIR && tar -xzf /tmp/sf2t-jax.tar.gz -C ~/$REMOTE_DIR"
    ;;
  install)
    on_workers "cd ~/$REMOTE_DIR && python3 -m pip install -q 'jax[tpu]==$JAX_VERSION' && python3 -m pip install -q -e ."
    ;;
  run)
    cmd=$(user_command "$@")
    on_workers "cd ~/$REMOTE_DIR && $cmd"
    ;;
  start)
    cmd=$(user_command "$@")
    # setsid + nohup: the job outlives this ssh session; its pid is kept for `stop`.
    on_workers "cd ~/$REMOTE_DIR && (setsid nohup $cmd > ~/sf2t-jax.log 2>&1 < /dev/null & echo \$! > ~/sf2t-jax.pid) && echo started \$(hostname)"
    ;;
  logs)
    on_workers "echo == \$(hostname); tail -n ${LINES_TO_SHOW:-20} ~/sf2t-jax.log"
    ;;
  stop)
    # SIGTERM is what a preemption sends: the trainer saves the current step and exits 0.
    on_workers "kill -TERM -\$(cat ~/sf2t-jax.pid) && echo stopping \$(hostname)"
    ;;
  -h|--help|help)
    usage 0
    ;;
  *)
    echo "error: unknown action '$ACTION'" >&2
    usage
    ;;
esac
