"""The default launcher: runs a sweep's jobs one after another on this machine, in this process."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import List, Sequence

from omegaconf import open_dict

from hydra.core.utils import JobReturn, configure_log, filter_overrides, run_job, setup_globals
from hydra._internal.core_plugins.basic_launcher import BasicLauncher

from mck.launch.plan import describe, not_run_records, plan_sweep, to_run

log = logging.getLogger("mck")


class MckLocalLauncher(BasicLauncher):
    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from mck import app

        setup_globals()
        assert self.hydra_context is not None and self.config is not None and self.task_function is not None
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        planned = plan_sweep(self.hydra_context.config_loader, self.config, job_overrides)
        runnable = to_run(planned)
        if self.config.get("dry_run"):
            print(describe(planned))
            return []
        app.RESULTS.extend(not_run_records(planned))
        for p in planned:
            if p.job is None:
                print(p.error_line, file=sys.stderr)
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        if runnable:
            sweep_dir.mkdir(parents=True, exist_ok=True)
        log.info("%d jobs to run locally (%d items in the sweep)", len(runnable), len(planned))
        runs: List[JobReturn] = []
        for idx, p in enumerate(runnable, start=initial_job_idx):
            log.info("\t#%d : %s", idx, " ".join(filter_overrides(p.overrides)))
            sweep_config = self.hydra_context.config_loader.load_sweep_config(self.config, p.overrides)
            with open_dict(sweep_config):
                sweep_config.hydra.job.id = idx
                sweep_config.hydra.job.num = idx
            runs.append(run_job(hydra_context=self.hydra_context, task_function=self.task_function,
                                config=sweep_config, job_dir_key="hydra.sweep.dir",
                                job_subdir_key="hydra.sweep.subdir"))
            configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        return runs
