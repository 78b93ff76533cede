"""Run one compiled job: bind ``func_args``/``func_kwargs`` by name to the step function, hold the item's lock,
write the job record before and after, and turn every failure into a recorded, one-line error."""

from __future__ import annotations

import contextlib
import logging
import os
import time
import traceback
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from mck import layout, records
from mck.binding import bind_arguments, import_step_function
from mck.compile import RUN, compile_job
from mck.errors import ConfigError, DiskFullError, MckError
from mck.runtime import Preempted

log = logging.getLogger("mck")


def execute(cfg: DictConfig, run_dir: str | None) -> dict[str, Any]:
    """Compile and (if its action is ``run``) run one job. Returns the job record; never raises MckError."""
    started = time.time()
    record: dict[str, Any] = {"step": str(cfg.step.name), "output_name": str(cfg.step.output_info.output_name),
                              "item": None, "run_dir": run_dir, **records.job_identity()}
    lock = None
    output_root = None
    ran = None          # the job, once its step function has started
    try:
        job = compile_job(cfg)
        output_root = job.output_root
        record.update(item=job.item, level=job.level, session=job.session, outputs=job.outputs,
                      time_limit_min=job.time_min, nframes=job.nframes, output_name=job.output_name,
                      inputs=job.inputs, variants=job.variants)
        if job.warnings:
            record["warnings"] = list(job.warnings)
            for warning in job.warnings:
                log.warning("%s %s: %s", job.step, job.item, warning)
        if job.variants:
            records.note_variants(job.output_root, job.variants)
        previous = records.read_record(job.output_root, job.step, job.output_name, job.item) or {}
        if previous.get("state") == "submitted" and previous.get("after"):
            record["after"] = previous["after"]     # the SLURM jobs it waited for (afterok)
        if run_dir:
            save_resolved_config(cfg, run_dir)
        if job.action != RUN:
            record.update(state=job.action, reason=job.reason)
            log.info("%s %s: %s (%s)", job.step, job.item, job.action, job.reason)
            return record
        if cfg.dry_run:
            record.update(state="dry_run")
            return record
        func = import_step_function(cfg.step)
        kwargs = bind_arguments(func, cfg.step, job)
        lock, owner = records.try_lock(job.output_root, job.step, job.output_name, job.item)
        if lock is None:
            record.update(state="running", reason=f"already running as {owner.get('job_id')}")
            log.info("%s %s: already running as %s", job.step, job.item, owner.get("job_id"))
            return record
        record.update(state="running", start=records.now())
        records.write_record(record, run_dir, job.output_root)
        log.info("%s %s: running (%s)", job.step, job.item, cfg.step.wrap_params.func_path)
        ran = job
        metrics = func(**kwargs) or {}
        missing = [p for p in job.outputs if not layout.output_exists(p)]
        if missing:
            raise MckError(f"step finished but did not write {', '.join(missing)}", item=job.item)
        record.update(state="done", metrics=metrics)
        for path in job.outputs:           # what a failed overwrite had set aside is superseded now
            with contextlib.suppress(OSError):
                Path(path + ".stale").unlink(missing_ok=True)
    except Preempted as exc:
        record.update(state="preempted", error=str(exc) or "preempted; resumes from its checkpoint")
    except MckError as exc:
        if exc.item is None and record.get("item"):
            exc.item = record["item"]
        key = getattr(exc, "record_key", None)
        if output_root is None and key is not None and not isinstance(exc, ConfigError):
            record.update(item=key[2], output_name=key[1], phase="planning")   # found while planning: record it
            output_root = key[3]
        record.update(state="failed", error=exc.one_line(), error_type=type(exc).__name__)
        log.debug("traceback:\n%s", traceback.format_exc())
    except Exception as exc:  # a bug or an unexpected library error: recorded with its traceback in the log
        from mck.io import free_bytes, is_disk_full

        if is_disk_full(exc):    # a library's own wording of ENOSPC (ffmpeg, NWB, HDF5): one line, item and place
            where = os.path.dirname(str((record.get("outputs") or [run_dir or "."])[0]))
            error = DiskFullError(f"disk full writing into {where} ({free_bytes(where) or 0} bytes free)",
                                  item=record.get("item"),
                                  fix="free space there, or set project.output_root=… to a disk with room, and re-run")
            record.update(state="failed", error=error.one_line(), error_type="DiskFullError")
            log.debug("traceback:\n%s", traceback.format_exc())
        else:
            record.update(state="failed", error=f"{type(exc).__name__}: {exc}", error_type=type(exc).__name__)
            log.error("%s", traceback.format_exc())
    finally:
        if ran is not None and record.get("state") == "failed" and cfg.get("overwrite"):
            record["stale_outputs"] = _set_aside(ran.outputs)
        end = time.time()
        record.update(end=records.now(), elapsed_s=round(end - started, 3), max_rss_mb=_max_rss_mb())
        if run_dir:
            record["log"] = str(next(iter(Path(run_dir).glob("*.log")), Path(run_dir) / "job.log"))
        written = False
        if output_root and record.get("state") in ("done", "failed", "preempted"):
            try:
                records.write_record(record, run_dir, output_root)
                written = True
            except (OSError, MckError) as exc:   # e.g. the output root is the problem (full, read-only)
                log.warning("could not record %s under %s (%s)", record.get("item"), output_root, exc)
        if run_dir and not written:
            from mck.io import save_json

            with contextlib.suppress(OSError, MckError):
                save_json(Path(run_dir) / "job.json", record)
        if lock is not None:
            lock.release()
    return record


def _set_aside(outputs: list[str]) -> list[str]:
    """After a failed ``overwrite=true`` run, the outputs it was asked to replace no longer describe the inputs:
    rename them to ``NAME.stale`` (kept for the user, no longer counted as done or read by later steps)."""
    moved = []
    for path in outputs:
        if os.path.lexists(path):
            try:
                os.replace(path, path + ".stale")
                moved.append(path + ".stale")
            except OSError:
                pass
    if moved:
        log.warning("the failed overwrite left the previous outputs aside: %s", ", ".join(moved))
    return moved


def save_resolved_config(cfg: DictConfig, run_dir: str) -> None:
    """``config.resolved.yaml``: the job's config with every interpolation resolved (environment variables and
    the item's paths included), so ``mck rerun`` repeats exactly this job whatever the environment then."""
    from mck.io import atomic_path

    try:
        text = OmegaConf.to_yaml(OmegaConf.create(OmegaConf.to_container(cfg, resolve=True)))
    except Exception:  # an interpolation that only this step never needs cannot resolve: keep Hydra's snapshot
        return
    with atomic_path(Path(run_dir) / "config.resolved.yaml") as tmp:
        tmp.write_text(text)


def _max_rss_mb() -> float:
    """Peak resident memory of this process so far, MiB (Linux reports KiB)."""
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
