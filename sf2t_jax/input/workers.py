"""Grain worker processes die with the process that started them, SIGKILL included.

grain starts its `mp_prefetch` workers with multiprocessing's 'spawn' context and stops them
when the iterator is closed or the parent exits normally. A parent killed outright (SIGKILL,
the OOM killer, a preempted VM's agent) closes nothing: each worker (a full interpreter with
the pipeline, ~270 MB) blocks on its full output queue for minutes, and multiprocessing's
resource tracker waits for them; restarted jobs pile them up.

`die_with_parent` is the workers' `worker_init_fn`: a daemon thread in each worker polls its
parent pid and exits the worker the moment the parent is gone (the resource tracker then
sees its last writer close and exits too).

Why not Linux's `prctl(PR_SET_PDEATHSIG)`: it fires when the *thread* that started the child
exits, not the process, and grain starts workers from whichever thread first pulls from the
iterator (interleave's helper threads among them), so a worker would be killed with a
finished helper thread while the trainer runs on. A parent watch has no such case, and works
on macOS too.
"""
from __future__ import annotations

import functools
import os
import threading
import time

POLL_SECONDS = 0.5  # how soon an orphaned worker notices; the check is one getppid() call


def die_with_parent_init(parent_pid: int | None = None):
    """The `worker_init_fn` for `mp_prefetch` (called as `fn(worker_index, worker_count)`):
    watches `parent_pid` (default: this process, the one building the dataset)."""
    return functools.partial(die_with_parent, os.getpid() if parent_pid is None else parent_pid)


def die_with_parent(parent_pid: int, worker_index: int = 0, worker_count: int = 1) -> None:
    """Runs in a worker: exit as soon as `parent_pid` is no longer this process's parent.

    The parent may already be gone when this runs (killed while the worker was starting):
    the first check is immediate.
    """
    del worker_index, worker_count  # grain passes them; every worker watches the same parent
    if os.getppid() != parent_pid:
        os._exit(1)
    threading.Thread(target=_watch, args=(parent_pid,), name="die-with-parent", daemon=True).start()


def _watch(parent_pid: int) -> None:
    # Reparenting (to init or a subreaper) is the only way our parent pid changes, and pids
    # are not reused while we are the child: polling getppid is exact, unlike kill(pid, 0).
    while os.getppid() == parent_pid:
        time.sleep(POLL_SECONDS)
    # os._exit, not sys.exit: no atexit handlers or queue joins, which would wait on the
    # parent that is no longer there to read them.
    os._exit(1)
