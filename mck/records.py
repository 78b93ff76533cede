"""Job records and item locks.

A job record (``job.json`` in the job's run dir, and a copy as the item's latest record under
``OUTPUT_ROOT/.mck/records/``) says: step, item, job id, host, start, end, state, outputs, error, metrics.
States: ``running``, ``done``, ``failed``, ``preempted`` (requeued), ``submitted`` (queued on SLURM).

A lock file per (step variant, item), created with O_EXCL, makes sure an item never runs twice at once — also
across concurrent launches. A lock whose owner is gone (dead local process, SLURM job no longer queued) is stale
and is taken over.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mck import layout
from mck.io import save_json

HOST = socket.gethostname()


def job_identity() -> dict[str, Any]:
    """Who is running this: host, pid and SLURM ids when inside a SLURM job."""
    ident: dict[str, Any] = {"host": HOST, "pid": os.getpid()}
    job_id = os.environ.get("SLURM_JOB_ID")
    if job_id:
        array_job = os.environ.get("SLURM_ARRAY_JOB_ID")
        array_task = os.environ.get("SLURM_ARRAY_TASK_ID")
        ident["slurm_job_id"] = f"{array_job}_{array_task}" if array_job and array_task else job_id
        ident["slurm_raw_job_id"] = job_id
        ident["node"] = os.environ.get("SLURMD_NODENAME", HOST)
        ident["partition"] = os.environ.get("SLURM_JOB_PARTITION")
        ident["job_id"] = ident["slurm_job_id"]
    else:
        ident["job_id"] = f"local-{HOST}-{os.getpid()}"
    return ident


_squeue_cache: tuple[float, set[str] | None] = (0.0, None)


def queued_slurm_jobs(max_age_s: float = 5.0) -> set[str] | None:
    """Job ids (``123``, ``123_4``, and raw ids) that SLURM has pending or running; None if SLURM is absent."""
    global _squeue_cache
    stamp, cached = _squeue_cache
    if cached is not None and time.monotonic() - stamp < max_age_s:
        return cached
    try:
        out = subprocess.run(["squeue", "-h", "-r", "-o", "%i %A"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    ids: set[str] = set()
    for line in out.stdout.split():
        ids.add(line.strip())
    _squeue_cache = (time.monotonic(), ids)
    return ids


def owner_alive(owner: dict[str, Any]) -> bool:
    """Is the process or SLURM job that wrote ``owner`` still pending/running?"""
    slurm_ids = [owner.get(k) for k in ("slurm_job_id", "slurm_raw_job_id") if owner.get(k)]
    if slurm_ids:
        queued = queued_slurm_jobs()
        if queued is None:
            return True  # cannot tell: be safe, never run twice
        return any(str(i) in queued for i in slurm_ids)
    if owner.get("host") == HOST and owner.get("pid"):
        try:
            os.kill(int(owner["pid"]), 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    return owner.get("host") != HOST  # another host without SLURM ids: assume alive


@dataclass
class Lock:
    path: Path

    def release(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


def try_lock(output_root: str, step: str, output_name: str, item: str) -> tuple[Lock | None, dict | None]:
    """Take the item's lock. Returns (lock, None) or (None, owner-of-the-live-lock)."""
    path = layout.lock_path(output_root, step, output_name, item)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        from mck.io import disk_full, is_disk_full

        if is_disk_full(exc):
            raise disk_full(path) from None
        raise
    me = job_identity()
    for _ in range(3):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            owner = layout.read_json(path) or {}
            if owner and owner.get("job_id") == me["job_id"]:
                return Lock(path), None  # our own (e.g. requeued SLURM job with the same id)
            if owner and owner_alive(owner):
                return None, owner
            stale = path.with_suffix(f".stale-{os.getpid()}")
            with contextlib.suppress(FileNotFoundError):
                os.rename(path, stale)   # atomic: only one contender wins the takeover
                stale.unlink()
            continue
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(me, f)
        except OSError as exc:       # e.g. disk full: never leave an empty lock behind
            with contextlib.suppress(OSError):
                path.unlink()
            from mck.io import disk_full, is_disk_full

            if is_disk_full(exc):
                raise disk_full(path) from None
            raise
        return Lock(path), None
    owner = layout.read_json(path) or {}
    return None, owner


def lock_path_for(job) -> Path:
    """The lock file of a compiled Job."""
    return layout.lock_path(job.output_root, job.step, job.output_name, job.item)


def lock_owner(output_root: str, step: str, output_name: str, item: str) -> dict | None:
    """The live owner of an item's lock, or None."""
    path = layout.lock_path(output_root, step, output_name, item)
    owner = layout.read_json(path)
    if owner and owner_alive(owner):
        return owner
    return None


def write_record(record: dict[str, Any], run_dir: str | None, output_root: str) -> None:
    """Write the record into the run dir (``job.json``) and as the item's latest record."""
    if run_dir:
        save_json(Path(run_dir) / "job.json", record)
    save_json(layout.record_path(output_root, record["step"], record["output_name"], record["item"]), record)


def record_planning_failure(exc: Exception, run_dir: str | None = None) -> dict[str, Any] | None:
    """Record an item's failure found while planning (bad input seen before the step ran), so that ``status``
    shows it as failed. Only for errors that carry ``record_key`` (set by compile) and are not configuration errors
    (those stop the whole sweep and belong to no item). Returns the record written, or None."""
    from mck.errors import ConfigError

    key = getattr(exc, "record_key", None)
    if key is None or isinstance(exc, ConfigError):
        return None
    step, output_name, item, output_root = key
    record = {"step": step, "output_name": output_name, "item": item, "run_dir": run_dir, **job_identity(),
              "state": "failed", "phase": "planning", "error": exc.one_line() if hasattr(exc, "one_line") else str(exc),
              "error_type": type(exc).__name__, "end": now()}
    try:
        write_record(record, run_dir, output_root)
    except OSError:
        return None
    return record


def read_record(output_root: str, step: str, output_name: str, item: str) -> dict | None:
    return layout.read_json(layout.record_path(output_root, step, output_name, item))


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def note_variants(output_root: str, variants: dict[str, str]) -> None:
    """Remember a variant selection (``.mck/variants.json``) so that ``status`` shows its rows."""
    path = layout.state_dir(output_root) / "variants.json"
    known = layout.read_json(path)
    known = known if isinstance(known, list) else []
    if dict(variants) not in known:
        save_json(path, [*known, dict(variants)])
