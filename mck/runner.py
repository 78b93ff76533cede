"""Run one compiled job: bind ``func_args``/``func_kwargs`` by name to the step function, hold the item's lock,
write the job record before and after, and turn every failure into a recorded, one-line error."""

from __future__ import annotations

import importlib
import inspect
import logging
import time
import traceback
from pathlib import Path
from typing import Any, Callable

from omegaconf import DictConfig, OmegaConf

from mck import layout, records
from mck.compile import RUN, Job, compile_job
from mck.errors import ConfigError, MckError, NotImplementedStep
from mck.runtime import Preempted

log = logging.getLogger("mck")
INJECTED = ("output_path", "item", "log")


def import_step_function(step: DictConfig) -> Callable[..., Any]:
    func_path = str(step.wrap_params.func_path)
    module_name, _, func_name = func_path.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and (exc.name == module_name or module_name.startswith(exc.name + ".")):
            raise NotImplementedStep(f"step {step.name} is not implemented yet ({func_path} does not exist)") from exc
        raise
    func = getattr(module, func_name, None)
    if func is None:
        raise NotImplementedStep(f"step {step.name} is not implemented yet ({func_path} does not exist)")
    return func


def _check_type(name: str, value: Any, default: Any, func_path: str) -> Any:
    """Reject values whose type cannot be what the parameter's default says (int ← 'abc')."""
    if default is inspect.Parameter.empty or default is None or value is None:
        return value
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"step.func_kwargs.{name}={value!r}: expected true or false ({func_path})")
    elif isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ConfigError(f"step.func_kwargs.{name}={value!r}: expected an integer ({func_path})")
    elif isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"step.func_kwargs.{name}={value!r}: expected a number ({func_path})")
        return float(value)
    elif isinstance(default, str):
        if not isinstance(value, str):
            raise ConfigError(f"step.func_kwargs.{name}={value!r}: expected a string ({func_path})")
    return value


def bind_arguments(func: Callable[..., Any], step: DictConfig, job: Job) -> dict[str, Any]:
    """Keyword arguments for ``func``: func_args + func_kwargs by name, plus output_path/item/log if declared."""
    func_path = str(step.wrap_params.func_path)
    signature = inspect.signature(func)
    params = signature.parameters
    accepts_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    try:
        func_args = OmegaConf.to_container(step.func_args, resolve=True)
        func_kwargs = OmegaConf.to_container(step.func_kwargs, resolve=True)
    except Exception as exc:
        raise ConfigError(f"cannot resolve step {step.name} arguments: {exc}") from exc
    kwargs: dict[str, Any] = {}
    for section, values in (("func_args", func_args), ("func_kwargs", func_kwargs)):
        for name, value in values.items():
            if name not in params and not accepts_any:
                valid = ", ".join(p for p in params if p not in INJECTED)
                raise ConfigError(f"step.{section}.{name} is not a parameter of {func_path}",
                                  fix=f"parameters: {valid}")
            default = params[name].default if name in params else inspect.Parameter.empty
            kwargs[name] = _check_type(name, value, default, func_path)
    injected = {"output_path": job.outputs[0] if job.outputs else None, "item": job.item, "log": log}
    for name, value in injected.items():
        if name in params:
            kwargs[name] = value
    missing = [n for n, p in params.items() if p.default is inspect.Parameter.empty and n not in kwargs
               and p.kind not in (inspect.Parameter.VAR_KEYWORD, inspect.Parameter.VAR_POSITIONAL)]
    if missing:
        raise ConfigError(f"{func_path} needs {', '.join(missing)}: add them to step.func_args")
    return kwargs


def execute(cfg: DictConfig, run_dir: str | None) -> dict[str, Any]:
    """Compile and (if its action is ``run``) run one job. Returns the job record; never raises MckError."""
    started = time.time()
    record: dict[str, Any] = {"step": str(cfg.step.name), "output_name": str(cfg.step.output_info.output_name),
                              "item": None, "run_dir": run_dir, **records.job_identity()}
    lock = None
    output_root = None
    try:
        job = compile_job(cfg)
        output_root = job.output_root
        record.update(item=job.item, level=job.level, session=job.session, outputs=job.outputs,
                      time_limit_min=job.time_min, nframes=job.nframes)
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
        metrics = func(**kwargs) or {}
        missing = [p for p in job.outputs if not layout.output_exists(p)]
        if missing:
            raise MckError(f"step finished but did not write {', '.join(missing)}", item=job.item)
        record.update(state="done", metrics=metrics)
    except Preempted as exc:
        record.update(state="preempted", error=str(exc) or "preempted; resumes from its checkpoint")
    except MckError as exc:
        if exc.item is None and record.get("item"):
            exc.item = record["item"]
        record.update(state="failed", error=exc.one_line(), error_type=type(exc).__name__)
        log.debug("traceback:\n%s", traceback.format_exc())
    except Exception as exc:  # a bug or an unexpected library error: recorded with its traceback in the log
        record.update(state="failed", error=f"{type(exc).__name__}: {exc}", error_type=type(exc).__name__)
        log.error("%s", traceback.format_exc())
    finally:
        end = time.time()
        record.update(end=records.now(), elapsed_s=round(end - started, 3), max_rss_mb=_max_rss_mb())
        if run_dir:
            record["log"] = str(next(iter(Path(run_dir).glob("*.log")), Path(run_dir) / "job.log"))
        if output_root and record.get("state") in ("done", "failed", "preempted"):
            records.write_record(record, run_dir, output_root)
        elif run_dir:
            from mck.io import save_json

            save_json(Path(run_dir) / "job.json", record)
        if lock is not None:
            lock.release()
    return record


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
