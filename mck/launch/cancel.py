"""``python -m mck cancel step=STEP [video=…|session=…|calibration=…] [project overrides]``: cancel that step's
queued and running SLURM jobs — only the job ids mck recorded for those items, never by a name pattern."""

from __future__ import annotations

import fnmatch
import os
import re
import subprocess
import sys

from mck import layout, records
from mck.errors import ConfigError
from mck.preparse import project_config
from mck.inventory import Settings

_GLOB = re.compile(r"^glob\((.*)\)$")


def _wait_until_gone(ids: set[str], timeout_s: float = 90.0) -> None:
    """Wait until SLURM has stopped the jobs, so that no job writes its record after ours."""
    import time

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        queued = records.queued_slurm_jobs(max_age_s=0) or set()
        if not ids & queued:
            return
        time.sleep(0.5)


def main(argv: list[str]) -> int:
    steps = [a.split("=", 1)[1] for a in argv if a.startswith("step=")]
    if not steps:
        raise ConfigError("cancel needs step=STEP", fix="e.g. python -m mck cancel step=hrnet video='glob(*)'")
    patterns = []
    for a in argv:
        key, _, value = a.partition("=")
        if key in ("video", "session", "calibration"):
            m = _GLOB.match(value)
            patterns += [m.group(1)] if m else value.split(",")
    overrides = [a for a in argv if a.startswith(("project", "+project", "++project"))]
    settings = Settings.from_project(project_config(overrides))
    queued = records.queued_slurm_jobs(max_age_s=0)
    if queued is None:
        raise ConfigError("squeue is not available here", fix="run mck cancel on a machine that can reach SLURM")
    to_cancel: list[tuple[str, str, str, str]] = []
    for step in steps:
        base = layout.state_dir(settings.output_root) / "locks" / step
        for lock in sorted(base.glob("*/*.lock")):
            item = lock.name[: -len(".lock")]
            if patterns and not any(fnmatch.fnmatchcase(item, p) for p in patterns):
                continue
            owner = layout.read_json(lock) or {}
            job_id = owner.get("slurm_job_id")
            if job_id and str(job_id) in queued:
                to_cancel.append((step, lock.parent.name.replace("__", os.sep), item, str(job_id)))
    if not to_cancel:
        print("mck: no queued or running jobs of " + ", ".join(steps) + " to cancel")
        return 0
    ids = sorted({j for *_, j in to_cancel})
    proc = subprocess.run(["scancel", *ids], capture_output=True, text=True)
    if proc.returncode != 0:
        print(f"mck: error: scancel failed: {proc.stderr.strip()}", file=sys.stderr)
        return 1
    _wait_until_gone(set(ids))
    for step, output_name, item, job_id in to_cancel:
        record = records.read_record(settings.output_root, step, output_name, item) or {
            "step": step, "output_name": output_name, "item": item}
        record.update(state="failed", error=f"cancelled by user (mck cancel, SLURM job {job_id})",
                      end=records.now())
        records.write_record(record, None, settings.output_root)
        layout.lock_path(settings.output_root, step, output_name, item).unlink(missing_ok=True)
        print(f"mck: cancelled {step} {item} (SLURM job {job_id})")
    return 0
