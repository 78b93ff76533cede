"""Process-wide run state shared between the launcher shell and long-running steps (preemption signals)."""

from __future__ import annotations

import signal
import threading

_stop = threading.Event()


class Preempted(Exception):
    """Raised by a step that saved its checkpoint and stops early because the scheduler asked it to."""


def stop_requested() -> bool:
    """True once SIGTERM/SIGUSR2 arrived (SLURM is about to stop this job): write the checkpoint and stop."""
    return _stop.is_set()


def request_stop(*_args) -> None:
    _stop.set()


def install_signal_handlers() -> None:
    """Turn SIGUSR2/SIGTERM into ``stop_requested()`` (main thread only; elsewhere a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        return
    for sig in (signal.SIGUSR2, signal.SIGTERM):
        signal.signal(sig, request_stop)


def clear_stop() -> None:
    """Forget an earlier stop request (a resumed run in the same process, tests)."""
    _stop.clear()
