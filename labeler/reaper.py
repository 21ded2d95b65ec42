"""No engine process outlives its command, on success, failure, Ctrl-C or SIGTERM.

vLLM starts its EngineCore and worker processes from the Ray actor that holds the engine. When
the actor dies (a crash, `ray.shutdown()`, a kill), those grandchildren are orphaned, and a busy
vLLM worker was seen to ignore SIGTERM and keep its memory and a core until SIGKILL. Three layers:

- Ray's own: local Ray starts with `RAY_process_group_cleanup_enabled` (raylet kills the process
  group of a worker that exited or crashed; labeler.raycluster).
- An engine actor that finds its engine dead kills its own children before it exits (kill_children).
- The command: it makes itself a child subreaper, so orphans of its Ray processes are reparented
  to it rather than to init, and at exit it SIGKILLs every descendant still alive (OwnedProcesses).
"""
from __future__ import annotations

import ctypes
import logging
import os
import signal
import sys
from typing import Optional

log = logging.getLogger(__name__)
PR_SET_CHILD_SUBREAPER = 36


def become_subreaper() -> bool:
    """Orphaned descendants are reparented to this process (Linux >= 3.4); False elsewhere."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def descendants(pid: Optional[int] = None) -> list:
    import psutil

    try:
        return psutil.Process(pid or os.getpid()).children(recursive=True)
    except psutil.Error:
        return []


def kill_all(procs, grace_s: float = 5.0) -> list[str]:
    """SIGTERM, wait up to `grace_s`, then SIGKILL what is left; returns "name[pid]" of each
    process that needed SIGKILL."""
    import psutil

    procs = [p for p in procs if _alive(p)]
    names = {p.pid: _name(p) for p in procs}
    for p in procs:
        try:
            p.terminate()
        except psutil.Error:
            pass
    _, alive = psutil.wait_procs(procs, timeout=grace_s)
    for p in alive:
        try:
            p.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(alive, timeout=grace_s)
    return [f"{names[p.pid]}[{p.pid}]" for p in alive]


def kill_children(grace_s: float = 2.0) -> None:
    """An engine actor's last act before exiting: none of its processes may stay behind."""
    left = kill_all(descendants(), grace_s)
    if left:
        log.warning("killed %d engine process(es) that ignored SIGTERM: %s", len(left), left)


def _alive(p) -> bool:
    import psutil

    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


class OwnedProcesses:
    """`with OwnedProcesses():` around a command: at exit, Ray is shut down and every descendant
    that is still alive is killed. SIGTERM is turned into SystemExit so that this runs for it too."""

    def __enter__(self):
        self.subreaper = become_subreaper()
        try:
            self._old = signal.signal(signal.SIGTERM, _sigterm)
        except ValueError:  # not the main thread
            self._old = None
        return self

    def __exit__(self, *exc):
        try:
            shutdown_ray()
        finally:
            left = kill_all(descendants(), grace_s=5.0)
            if left:
                log.info("killed %d process(es) that Ray's shutdown left behind: %s", len(left), left)
            if self._old is not None:
                signal.signal(signal.SIGTERM, self._old)
        return False


def _sigterm(signum, frame):
    raise SystemExit(128 + signum)


def _name(p) -> str:
    try:
        return p.name()
    except Exception:
        return str(p.pid)


def shutdown_ray() -> None:
    if "ray" in sys.modules:
        import ray

        if ray.is_initialized():
            try:
                ray.shutdown()
            except Exception as e:  # a broken session must not hide the command's own error
                log.debug("ray.shutdown failed: %s", e)
