"""mck's SLURM launcher: hydra-submitit-launcher, extended with per-job resources.

The stock launcher submits a whole sweep with one ``timeout_min``. This one plans the sweep (compose + compile
every job: skip done, report blocked, drop duplicates and items already queued or running), computes each job's
resources from its step config (time from its frame count, mem, cpus, ``--gres=gpu:1``, partition, setup lines),
groups jobs with equal resources, and submits one submitit array per group. Timeouts are requeued
(``max_num_timeout``) and the step resumes from its checkpoint.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any, List, Sequence

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, filter_overrides
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import BaseSubmititLauncher
from omegaconf import OmegaConf

from mck import records
from mck.errors import ConfigError
from mck.launch import slurm
from mck.launch.plan import Planned, describe, not_run_records, plan_sweep, to_run

log = logging.getLogger("mck")


class _DropSacctNoise(logging.Filter):
    """submitit warns on every poll when SLURM accounting is off; the results still come back."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Bypassing sacct error" not in record.getMessage()


logging.getLogger("submitit").addFilter(_DropSacctNoise())


class MckSlurmLauncher(BaseSubmititLauncher):
    _EXECUTOR = "slurm"

    def __init__(self, **params: Any) -> None:
        unknown = sorted(set(params) - slurm.LAUNCHER_KEYS)
        if unknown:
            raise ConfigError(f"unknown hydra.launcher parameter(s): {', '.join(unknown)}",
                              fix=f"valid: {', '.join(sorted(slurm.LAUNCHER_KEYS - {'_target_'}))}")
        super().__init__(**params)

    def _job_parameters(self, p: Planned) -> dict[str, Any]:
        step = p.config.step
        return slurm.slurm_parameters(p.job, self.params, list(step.wrap_params.modules),
                                      step.wrap_params.conda_env)

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        import submitit

        from mck import app

        assert self.config is not None and self.hydra_context is not None
        planned = plan_sweep(self.hydra_context.config_loader, self.config, job_overrides,
                             chain_queued=bool(self.params.get("after_queued", False)))
        runnable = to_run(planned)
        groups: dict[tuple, list[tuple[Planned, dict[str, Any]]]] = {}
        facts = slurm.cluster_facts() if self.params.get("fit_to_cluster", True) else None
        for p in runnable:
            params = self._job_parameters(p)
            if facts is not None:
                params, notes = slurm.fit_to_cluster(params, facts)
                for note in notes:
                    log.info("%s: %s", p.job.label, note)
            # jobs that wait on producers share an array only with jobs waiting on the same ones, so a failed
            # producer cancels its own dependents and nothing else
            groups.setdefault((slurm.group_key(params), tuple(p.job.after)), []).append((p, params))
        if self.config.get("dry_run"):
            print(describe(planned))
            for members in groups.values():
                params = self._array_params(members)
                print(f"\n# sbatch script for {len(members)} job(s): {params['job_name']}")
                print(slurm.sbatch_script(params, str(self.params["submitit_folder"]), map_count=len(members)))
            return []
        app.RESULTS.extend(not_run_records(planned))
        for p in planned:
            if p.job is None:
                print(p.error_line, file=sys.stderr)
        if not runnable:
            skipped = {}
            for rec in not_run_records(planned):
                skipped[rec["state"]] = skipped.get(rec["state"], 0) + 1
            print("mck: nothing to submit (" + ", ".join(f"{n} {s}" for s, n in sorted(skipped.items())) + ")")
            return []
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        submitted: list[tuple[Planned, Any]] = []
        idx = initial_job_idx
        for members in groups.values():
            for chunk in slurm.chunks(members, self.params.get("max_array_size")):
                executor = submitit.SlurmExecutor(folder=str(self.params["submitit_folder"]),
                                                  max_num_timeout=int(self.params.get("max_num_timeout", 3)))
                executor.update_parameters(**self._array_params(chunk))
                after = sorted({a for p, _ in chunk for a in p.job.after})
                if after:   # producers queued in this submission: start only when all of them succeeded
                    extra = dict(self._array_params(chunk).get("additional_parameters") or {})
                    extra.update(dependency="afterok:" + ":".join(after), kill_on_invalid_dep="yes")
                    executor.update_parameters(additional_parameters=extra)
                args = []
                for p, _ in chunk:
                    log.info("\t#%d : %s", idx, " ".join(filter_overrides(p.overrides)))
                    args.append((p.overrides, "hydra.sweep.dir", idx, f"job_id_for_{idx}", Singleton.get_state()))
                    idx += 1
                jobs = executor.map_array(self, *zip(*args))
                for (p, _), job in zip(chunk, jobs):
                    self._record_submission(p, job)
                    submitted.append((p, job))
        print(f"mck: submitted {len(submitted)} jobs in {len(groups)} resource group(s): "
              + ", ".join(f"{p.job.item}={job.job_id}" for p, job in submitted[:6])
              + (" …" if len(submitted) > 6 else ""))
        if not self.params.get("wait", True):
            print("mck: not waiting (hydra.launcher.wait=false); follow with: python -m mck status")
            return []
        for p, job in submitted:
            app.RESULTS.append(self._result(p, job))
        return []

    @staticmethod
    def _array_params(members: list[tuple[Planned, dict[str, Any]]]) -> dict[str, Any]:
        params = dict(members[0][1])
        if len(members) > 1:
            params["job_name"] = slurm.job_name(f"mck.{members[0][0].job.step}")
        return params

    @staticmethod
    def _record_submission(p: Planned, job: Any) -> None:
        owner = {"job_id": job.job_id, "slurm_job_id": job.job_id, "host": records.HOST,
                 "submitted": records.now(), "state": "submitted"}
        lock = records.lock_path_for(p.job)
        lock.parent.mkdir(parents=True, exist_ok=True)
        from mck.io import save_json

        save_json(lock, owner)
        record = {"step": p.job.step, "output_name": p.job.output_name, "item": p.job.item, "level": p.job.level,
                  "outputs": p.job.outputs, "time_limit_min": p.job.time_min, "nframes": p.job.nframes,
                  "overrides": p.overrides, "after": p.job.after, "variants": p.job.variants, **owner}
        records.write_record(record, None, p.job.output_root)
        if p.job.variants:
            records.note_variants(p.job.output_root, p.job.variants)

    @staticmethod
    def _result(p: Planned, job: Any) -> dict[str, Any]:
        try:
            ret = job.results()[0]
            value = ret.return_value if hasattr(ret, "return_value") else ret
            return value if isinstance(value, dict) else {"state": "done", "item": p.job.item}
        except Exception as exc:  # the job died (killed, out of memory, node failure)
            text = str(exc).strip().splitlines()
            error = f"SLURM job {job.job_id} failed: {text[-1] if text else type(exc).__name__}"
            record = {"step": p.job.step, "output_name": p.job.output_name, "item": p.job.item, "state": "failed",
                      "error": error, "slurm_job_id": job.job_id, "log": str(job.paths.stderr)}
            records.write_record(record, None, p.job.output_root)
            return record
