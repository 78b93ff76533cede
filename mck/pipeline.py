"""``python -m mck pipeline [OVERRIDES…] [-m] [session=…|video=…|calibration=…] [only=a,b] [until=STEP]``: every
pending job of every step, for the selected items, in the order the step graph gives.

    python -m mck pipeline experiment=demo                                  # here, step after step
    python -m mck pipeline experiment=demo hydra/launcher=o2_gpu -m session='glob(*)'   # all at once on SLURM
    python -m mck pipeline variant=hrnet_v2 until=qc session=20240422_J04301           # a variant chain
    python -m mck pipeline dry_run=true                                     # the plan; nothing runs

Before anything runs or is submitted, one job of every step that has work is compiled and its arguments bound to
the step function (a misspelled or mistyped parameter stops everything here). Then each step runs as its own
``python -m mck step=STEP … -m LEVEL=ITEMS`` over its pending items — with the local launcher one step after the
other, so a failed item leaves its dependents blocked with the reason in ``status``; with a SLURM launcher every
step is submitted at once (``hydra.launcher.after_queued=true``): a job whose inputs are being made by queued jobs
waits for them with ``--dependency=afterok:…`` (``--kill-on-invalid-dep=yes``: a failed producer cancels its
dependents, and ``status`` shows them blocked with the reason). ``hydra.launcher.wait=true`` (the default) then
waits for the queue to drain.
"""

from __future__ import annotations

import fnmatch
import os
import re
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field

from mck.config import glob_matches
from mck.errors import ConfigError, MckError
from mck.inventory import ITEM_GROUPS, Inventory

_GLOB = re.compile(r"^glob\((.*)\)$")
_PLAIN = re.compile(r"^[\w.\-]+$")
OPTIONS = ("only", "until", "wait")


@dataclass
class StepPlan:
    step: str
    level: str
    todo: list[str]
    done: int
    blocked: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    returncode: int | None = None


def select(inv: Inventory, selectors: dict[str, str]) -> dict[str, set[str]]:
    """Items per level from ``session=…``/``video=…``/``calibration=…`` (names, lists or ``glob(…)``): the sessions
    selected (directly or through their videos), their videos and their calibrations. No selector: everything."""
    def pick(names, value):
        match = _GLOB.match(value)
        if match:
            return set(glob_matches(names, match.group(1)))
        wanted = {v.strip().strip("'\"") for v in value.split(",") if v.strip()}
        return {n for n in names if any(fnmatch.fnmatchcase(n, p) for p in wanted)}

    if not selectors:
        sessions = set(inv.sessions)
        calibrations = set(inv.calibrations)
    else:
        sessions, calibrations = set(), set()
        if "session" in selectors:
            sessions |= pick(inv.sessions, selectors["session"])
        if "video" in selectors:
            sessions |= {inv.videos[v].session for v in pick(inv.videos, selectors["video"])}
        if "calibration" in selectors:
            calibrations |= pick(inv.calibrations, selectors["calibration"])
        for kind, value in selectors.items():
            if not (sessions or calibrations):
                raise ConfigError(f"no {kind} matches {value!r} under {inv.settings.data_root}",
                                  fix=f"{len(inv.group(kind))} {kind} items exist" + (
                                      f", e.g. {', '.join(sorted(inv.group(kind))[:3])}" if inv.group(kind) else ""))
        calibrations |= {c for s in sessions for c in [inv.calibration_for(s)[0]] if c}
    videos = {f"{s}.{cam}" for s in sessions for cam in inv.sessions[s].videos}
    return {"video": videos, "session": sessions, "calibration": calibrations}


def _quote(name: str) -> str:
    if _PLAIN.match(name):
        return name
    return "'" + name.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _chosen_rows(root, statuses: list) -> list:
    """The status row of each step for the variants this run writes (a step upstream of every tagged step keeps
    its default output name, so its default row is the one that counts)."""
    from mck.graph import build_graph

    graph = build_graph(root)
    return [s for s in statuses if s.output_name == graph.node(s.step).output_name]


def plan(root, selection: dict[str, set[str]], steps: list[str], overwrite: bool) -> list[StepPlan]:
    """What each step has to do for the selection (from ``status``: one stat per output, no composition)."""
    from mck.status import compute

    statuses = {s.step: s for s in _chosen_rows(root, compute(root, steps))}
    plans = []
    for step in steps:
        st = statuses[step]
        names = [i for i in st.items if st.level == "project" or i in selection[st.level]]
        todo = [i for i in names if overwrite or st.items[i] != "done"]
        blocked = [(i, r) for i, r in st.blocked if i in todo]
        plans.append(StepPlan(step, st.level, todo, len(names) - len(todo), blocked))
    return plans


def validate(plans: list[StepPlan], overrides: list[str]) -> list[str]:
    """Compile one pending job of every step (arguments bound to the step function); the config errors found."""
    from mck.compile import compile_job
    from mck.preparse import compose_root

    errors = []
    for p in plans:
        if not p.todo:
            continue
        item = [] if p.level == "project" else [f"{p.level}={_quote(p.todo[0])}"]
        try:
            cfg = compose_root([f"step={p.step}", *overrides, *item], with_items=True)
            compile_job(cfg, check_running=False)
        except ConfigError as exc:
            errors.append(f"{p.step}: {exc.one_line()}")
        except MckError:
            pass   # an input problem of this one item: its job reports it
    return errors


def _is_slurm(root) -> bool:
    target = str(root.hydra.launcher.get("_target_", ""))
    return "Slurm" in target or "slurm" in target


def main(argv: list[str]) -> int:
    from mck.preparse import compose_root, export_settings
    from mck.graph import build_graph
    from mck.inventory import scan

    argv = [a for a in argv if a not in ("-m", "--multirun")]
    options = {k: v for a in argv for k, _, v in [a.partition("=")] if k in OPTIONS}
    selectors = {k: v for a in argv for k, _, v in [a.partition("=")] if k in ITEM_GROUPS}
    overrides = [a for a in argv if a.partition("=")[0] not in (*OPTIONS, *ITEM_GROUPS)]
    root = compose_root(overrides, return_hydra=True)
    settings = export_settings(overrides)
    inv = scan(settings)
    selection = select(inv, selectors)
    graph = build_graph(root)
    steps = list(graph.order)
    if options.get("only"):
        wanted = [s.strip() for s in options["only"].strip("[]").split(",") if s.strip()]
        for s in wanted:
            graph.node(s)
        steps = [s for s in steps if s in wanted]
    if options.get("until"):
        steps = [s for s in graph.upstream([options["until"]]) if s in steps]
    overwrite = str(root.get("overwrite")).lower() == "true"
    plans = plan(root, selection, steps, overwrite)
    slurm = _is_slurm(root)
    print(f"mck pipeline: {len(steps)} steps on {len(selection['session'])} sessions, {len(selection['video'])} "
          f"videos, {len(selection['calibration'])} calibrations ({'SLURM' if slurm else 'this machine'})")
    for p in plans:
        note = f", {len(p.blocked)} blocked now" if p.blocked else ""
        print(f"  {p.step:<16} {p.level:<12} {len(p.todo)} to run, {p.done} done{note}")
    errors = validate(plans, overrides)
    if errors:
        for e in errors:
            print(f"mck: error: {e}", file=sys.stderr)
        print(f"mck: error: {len(errors)} step(s) have configuration errors; nothing was run or submitted",
              file=sys.stderr)
        return 2
    if root.get("dry_run"):
        print("mck pipeline: configuration checked; dry_run=true: nothing runs")
        return 0
    ran_any = False
    for p in plans:
        if not p.todo and not (p.step == "report" and ran_any):
            continue
        cmd = [sys.executable, "-m", "mck", f"step={p.step}", *overrides]
        if p.level != "project":
            cmd += ["-m", f"{p.level}=" + ",".join(_quote(i) for i in p.todo)]
        elif slurm:
            cmd.append("-m")      # a multirun of one job: through the SLURM launcher (afterok on queued producers)
        elif p.step == "report" and ran_any and not p.todo:
            cmd.append("overwrite=true")
        if slurm:
            cmd += ["hydra.launcher.wait=false", "hydra.launcher.after_queued=true"]
        shown = " ".join(shlex.quote(c) for c in ["python", *cmd[1:]])
        print(f"\n$ {shown if len(shown) < 400 else shown[:400] + ' …'}", flush=True)
        t0 = time.time()
        p.returncode = subprocess.run(cmd, env=os.environ.copy()).returncode
        p.seconds = time.time() - t0
        ran_any = True
    if slurm and root.hydra.launcher.get("wait", True):
        _wait_for_queue(root, steps)
    timings = ", ".join(f"{p.step} {p.seconds:.0f} s" for p in plans if p.returncode is not None)
    print(f"\nmck pipeline: finished ({timings or 'nothing to do'})")
    from mck.status import compute, format_text

    statuses = _chosen_rows(root, compute(root, steps))
    print(format_text(statuses))
    selected = {s.step: [i for i in s.items if s.level == "project" or i in selection[s.level]] for s in statuses}
    unfinished = {s.step: sum(s.items[i] in ("failed", "blocked", "pending") for i in selected[s.step])
                  for s in statuses}
    bad = any(p.returncode not in (None, 0) for p in plans) or any(unfinished.values())
    if any(unfinished.values()):
        print("mck pipeline: not finished: " + ", ".join(f"{k} {v}" for k, v in unfinished.items() if v)
              + " item(s) failed, blocked or pending (see the reasons above)", file=sys.stderr)
    return 1 if bad else 0


def _wait_for_queue(root, steps: list[str], poll_s: float = 5.0) -> None:
    """Until no item of these steps is queued or running (``status``), printing progress when it changes."""
    from mck.status import compute

    last = None
    while True:
        statuses = compute(root, steps)
        running = sum(s.counts["running"] for s in statuses)
        summary = ", ".join(f"{s.step} {s.counts['done']}/{sum(s.counts.values())}" for s in statuses)
        if summary != last:
            print(f"mck pipeline: {running} queued or running; done: {summary}", flush=True)
            last = summary
        if not running:
            return
        time.sleep(poll_s)
