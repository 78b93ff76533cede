"""Plan a sweep: one compiled Job per distinct item, with the overrides that compose its config."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Sequence

from omegaconf import DictConfig

from mck.compile import RUN, Job, compile_job, format_table
from mck.errors import ConfigError, MckError

log = logging.getLogger("mck")


@dataclass
class Planned:
    overrides: list[str]
    job: Job | None          # None when compiling failed
    config: DictConfig | None
    error: str | None = None
    step: str | None = None  # when compiling failed: the step and item, if known
    item: str | None = None

    @property
    def error_line(self) -> str:
        """``mck: error: <item>: <what> (<fix>)`` (the overrides stand in for an item that is not known)."""
        return f"mck: error: {self.error}" if self.item else f"mck: error: {' '.join(self.overrides)}: {self.error}"


def plan_sweep(config_loader: Any, base_config: DictConfig, job_overrides: Sequence[Sequence[str]],
               chain_queued: bool = False) -> list[Planned]:
    """Compose and compile every job of a sweep (arguments bound to the step function: validated) before any of
    them runs; keep the first job of each (step, variant, item). A configuration error in any job stops the whole
    sweep here, before anything runs or is submitted; item errors (bad inputs) leave that item out."""
    planned: list[Planned] = []
    seen: set[tuple[str, str, str]] = set()
    config_errors: list[str] = []
    for overrides in job_overrides:
        overrides = list(overrides)
        try:
            cfg = config_loader.load_sweep_config(base_config, overrides)
            job = compile_job(cfg, chain_queued=chain_queued)
        except ConfigError as exc:
            config_errors.append(exc.one_line())
            planned.append(Planned(overrides, None, None, exc.one_line()))
            continue
        except MckError as exc:
            from mck.records import record_planning_failure

            record_planning_failure(exc)
            key = getattr(exc, "record_key", None)
            planned.append(Planned(overrides, None, None, exc.one_line(), key[0] if key else None,
                                   key[2] if key else exc.item))
            continue
        if job.key in seen:
            continue
        seen.add(job.key)
        planned.append(Planned(_item_overrides(overrides, job), job, cfg))
    if config_errors:
        others = f" (and {len(config_errors) - 1} more jobs)" if len(config_errors) > 1 else ""
        raise ConfigError(f"{config_errors[0]}{others}; nothing was run or submitted")
    return planned


def describe(planned: list[Planned]) -> str:
    jobs = [p.job for p in planned if p.job is not None]
    text = format_table(jobs) if jobs else "(no jobs)"
    errors = [f"  {' '.join(p.overrides)}: {p.error}" for p in planned if p.error]
    if errors:
        text += "\nerrors:\n" + "\n".join(errors)
    return text


def to_run(planned: list[Planned]) -> list[Planned]:
    return [p for p in planned if p.job is not None and p.job.action == RUN]


def not_run_records(planned: list[Planned]) -> list[dict[str, Any]]:
    """Records for the jobs a launcher leaves out (skip/blocked/running) and those that failed to compile."""
    out = []
    for p in planned:
        if p.job is None:
            out.append({"state": "failed", "step": p.step or "", "item": p.item or " ".join(p.overrides),
                        "error": p.error})
        elif p.job.action != RUN:
            out.append({"state": p.job.action, "step": p.job.step, "item": p.job.item, "reason": p.job.reason})
    return out


def _item_overrides(overrides: list[str], job: Job) -> list[str]:
    """Name the item the job really works on (``session=S`` rather than ``video=S.top`` for a session step)."""
    if job.level not in ("session", "calibration") or any(o.startswith(job.level + "=") for o in overrides):
        return overrides
    kept = [o for o in overrides if not o.startswith(("video=", "session="))]
    return kept + [f"{job.level}={job.item}"]
