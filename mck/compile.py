"""Compile: one composed config (step + item + project) → one Job: which item, which outputs, what to do
(run / skip because done / blocked by a dependency / running elsewhere), its time limit and resources.

Pure bookkeeping on the config and the file system; it never runs a step.
"""

from __future__ import annotations

import functools
import math
import os
from dataclasses import asdict, dataclass, field
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

from mck import layout, records
from mck.config import CONF_DIR, LEVELS, StepConfig
from mck.errors import ConfigError, InputError
from mck.inventory import Settings, find_item, item_node, match_calibration, unknown_item_error, scan

RUN, SKIP, BLOCKED, RUNNING = "run", "skip", "blocked", "running"


@dataclass
class Job:
    step: str
    output_name: str
    level: str
    item: str
    session: str | None
    outputs: list[str]
    action: str = RUN
    reason: str = ""
    time_min: int = 10
    nframes: int | None = None
    mem: str = "4GB"
    ncpus: int = 1
    gpu: bool = False
    output_root: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.step, self.output_name, self.item)

    @property
    def label(self) -> str:
        return f"mck.{self.step}.{self.item}"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@functools.lru_cache(maxsize=64)
def _step_file(name: str) -> DictConfig:
    path = CONF_DIR / "step" / f"{name}.yaml"
    if not path.is_file():
        options = sorted(p.stem for p in (CONF_DIR / "step").glob("*.yaml"))
        raise ConfigError(f"no step named {name!r}", fix=f"steps: {', '.join(options)}")
    return OmegaConf.merge(OmegaConf.structured(StepConfig), OmegaConf.load(path))


def step_spec(name: str, project: DictConfig) -> DictConfig:
    """A step's config (from ``conf/step/NAME.yaml``) with ``project`` available for interpolation."""
    root = OmegaConf.create({"project": project, "step": _step_file(name)})
    return root.step


def level_of(step: DictConfig) -> str:
    level = str(step.pipeline_info.processing_level)
    if level not in LEVELS:
        raise ConfigError(f"step.pipeline_info.processing_level={level!r} is not one of {', '.join(LEVELS)}")
    return level


def step_outputs(step: DictConfig, level: str, item: str, output_dir: str) -> list[str]:
    info = step.output_info
    return layout.output_paths(level, item, output_dir, str(info.output_name), [str(a) for a in info.also])


def project_output_dir(step: DictConfig, project: DictConfig) -> str:
    return str(step.output_info.output_dir or project.output_root)


def ensure_item(cfg: DictConfig, settings: Settings) -> tuple[str, str | None, str]:
    """Make sure the config has the node of the item its step works on; returns (item, session, output_dir).

    A session-level step given ``video=S.cam`` works on session ``S`` (so a sweep over videos runs once per
    session); a calibration-level step given a session or video works on that session's calibration.
    """
    level = level_of(cfg.step)
    if level == "project":
        return str(cfg.project.name), None, ""
    if level == "video":
        if cfg.get("video") is None:
            raise ConfigError(f"step {cfg.step.name} works on videos: choose one with video=SESSION.CAMERA",
                              fix="or sweep: -m video='glob(*)'")
        return str(cfg.video.name), str(cfg.video.session), str(cfg.video.output_dir)
    if level == "session":
        if cfg.get("session") is None:
            if cfg.get("video") is None:
                raise ConfigError(f"step {cfg.step.name} works on sessions: choose one with session=NAME",
                                  fix="or sweep: -m session='glob(*)' (or video='glob(*)')")
            _set_node(cfg, "session", _node(settings, "session", str(cfg.video.session)))
        return str(cfg.session.name), str(cfg.session.name), str(cfg.session.output_dir)
    # calibration level
    if cfg.get("calibration") is None:
        source = cfg.get("session") or cfg.get("video")
        if source is None:
            raise ConfigError(f"step {cfg.step.name} works on calibration sessions: choose one with calibration=NAME",
                              fix="or sweep: -m calibration='glob(*)'")
        name, error = match_calibration(settings, str(source.session))
        if name is None:
            raise ConfigError(error, item=str(source.session))
        _set_node(cfg, "calibration", _node(settings, "calibration", name))
    return str(cfg.calibration.name), str(cfg.calibration.name), str(cfg.calibration.output_dir)


def _node(settings: Settings, kind: str, name: str) -> dict[str, Any]:
    item = find_item(settings, kind, name)
    if item is None:
        raise unknown_item_error(kind, name, scan(settings).group(kind), settings)
    calibration = match_calibration(settings, item.session) if kind != "calibration" else None
    return item_node(settings, item, calibration)


def _set_node(cfg: DictConfig, key: str, node: dict[str, Any]) -> None:
    was_readonly = OmegaConf.is_readonly(cfg)
    OmegaConf.set_readonly(cfg, False)
    with open_dict(cfg):
        cfg[key] = node
    OmegaConf.set_readonly(cfg, was_readonly)


def count_frames_cached(video_path: str, output_dir: str, video_name: str) -> int | None:
    """Frame count from the probe cache, else from the container header (no decoding), else None."""
    probe = layout.read_json(layout.probe_path(output_dir, video_name))
    if probe and isinstance(probe.get("frames"), int):
        return probe["frames"]
    try:
        from mck.video import video_info

        frames = video_info(video_path).frames
    except Exception:
        return None
    return frames if frames > 0 else None


def item_frames(cfg: DictConfig, level: str) -> int | None:
    if level == "video":
        return count_frames_cached(str(cfg.video.path), str(cfg.video.output_dir), str(cfg.video.name))
    if level in ("session", "calibration"):
        node = cfg.session if level == "session" else cfg.calibration
        counts = [count_frames_cached(str(p), str(node.output_dir), f"{node.name}.{cam}")
                  for cam, p in node.videos.items()]
        counts = [c for c in counts if c]
        return max(counts) if counts else None
    return None


def time_limit_min(slurm: DictConfig, nframes: int | None, time_scale: float) -> int:
    """``max(min_minutes, nframes × sec_per_frame / 60) × time_scale``, in whole minutes."""
    minutes = float(slurm.min_minutes)
    if nframes:
        minutes = max(minutes, nframes * float(slurm.sec_per_frame) / 60.0)
    return int(math.ceil(minutes * float(time_scale)))


def dependency_items(cfg: DictConfig, dep_level: str, settings: Settings) -> list[tuple[str, str]]:
    """(item, output_dir) pairs of the dependency step that this job's item needs."""
    level = level_of(cfg.step)
    if dep_level == "project":
        return [(str(cfg.project.name), "")]
    if level == "project":
        inv = scan(settings)
        group = inv.group(dep_level)
        return [(name, it.output_dir) for name, it in sorted(group.items())]
    if dep_level == "calibration":
        if level == "calibration":
            return [(str(cfg.calibration.name), str(cfg.calibration.output_dir))]
        node = cfg.session if level == "session" else None
        session = str(node.name) if node is not None else str(cfg.video.session)
        name, error = match_calibration(settings, session)
        if name is None:
            raise ConfigError(error, item=session)
        return [(name, os.path.join(settings.output_root, name))]
    if dep_level == level:
        item, _, out = _item_of(cfg, level)
        return [(item, out)]
    if dep_level == "video" and level == "session":
        node = cfg.session
        return [(f"{node.name}.{cam}", str(node.output_dir)) for cam in node.videos]
    if dep_level == "session" and level == "video":
        return [(str(cfg.video.session), str(cfg.video.output_dir))]
    raise ConfigError(f"step {cfg.step.name} ({level}) cannot depend on a {dep_level}-level step")


def _item_of(cfg: DictConfig, level: str) -> tuple[str, str | None, str]:
    node = cfg[level]
    return str(node.name), str(node.session), str(node.output_dir)


def compile_job(cfg: DictConfig, *, check_running: bool = True) -> Job:
    """Turn one composed config into a Job and decide its action."""
    settings = Settings.from_project(cfg.project)
    step = cfg.step
    level = level_of(step)
    item, session, output_dir = ensure_item(cfg, settings)
    if level == "project":
        output_dir = project_output_dir(step, cfg.project)
    outputs = step_outputs(step, level, item, output_dir)
    slurm = step.slurm_params
    nframes = item_frames(cfg, level)
    job = Job(step=str(step.name), output_name=str(step.output_info.output_name), level=level, item=item,
              session=session, outputs=outputs, time_min=time_limit_min(slurm, nframes, cfg.time_scale),
              nframes=nframes, mem=str(slurm.mem), ncpus=int(slurm.ncpus), gpu=bool(slurm.gpu),
              output_root=settings.output_root)
    if level == "session" and "calibration" in list(step.step_dependencies) and not cfg.session.calibration:
        raise ConfigError(str(cfg.session.calibration_error), item=item)
    _check_writable(os.path.dirname(outputs[0]), item)
    if level == "session":
        check_session_frames(cfg.session)
    if not cfg.overwrite and all(layout.output_valid(p) for p in outputs):
        job.action, job.reason = SKIP, "done"
        return job
    if check_running:
        owner = records.lock_owner(job.output_root, job.step, job.output_name, item)
        if owner and owner.get("job_id") != records.job_identity()["job_id"]:
            job.action, job.reason = RUNNING, f"running as {owner.get('job_id')} on {owner.get('host')}"
            return job
    missing = []
    for dep in step.step_dependencies:
        dep_step = step_spec(str(dep), cfg.project)
        dep_level = level_of(dep_step)
        for dep_item, dep_dir in dependency_items(cfg, dep_level, settings):
            if dep_level == "project":
                dep_dir = project_output_dir(dep_step, cfg.project)
            if not all(layout.output_exists(p) for p in step_outputs(dep_step, dep_level, dep_item, dep_dir)):
                missing.append(f"{dep} {dep_item}")
    if missing:
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        job.action, job.reason = BLOCKED, "waiting for " + ", ".join(missing[:3]) + more
    return job


def check_session_frames(session: DictConfig) -> None:
    """Cameras of a session must agree on frame count (from the probe caches) unless an alignment file explains
    the difference. Cameras not probed yet are not checked."""
    counts = {}
    for cam in session.videos:
        probe = layout.read_json(layout.probe_path(str(session.output_dir), f"{session.name}.{cam}"))
        if probe and isinstance(probe.get("frames"), int):
            counts[str(cam)] = probe["frames"]
    if len(set(counts.values())) > 1 and not session.get("alignment"):
        detail = ", ".join(f"{c} {n}" for c, n in counts.items())
        raise InputError(f"cameras disagree on frame count ({detail}) and there is no aligned_frame_numbers.csv",
                         item=str(session.name),
                         fix="add the acquisition's aligned_frame_numbers.csv to the session folder, or re-export "
                             "the videos")


def _check_writable(directory: str, item: str) -> None:
    """The output directory (or its nearest existing ancestor) must be a writable directory."""
    path = os.path.abspath(directory)
    while not os.path.exists(path):
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    if not os.path.isdir(path) or not os.access(path, os.W_OK | os.X_OK):
        raise InputError(f"output directory {directory} is not writable ({path} is "
                         f"{'not a directory' if not os.path.isdir(path) else 'read-only'})", item=item,
                         fix="set project.output_root=… to a writable place or fix the permissions")


def format_table(jobs: list[Job]) -> str:
    """The dry-run table: item, action, time limit, resources."""
    rows = [("step", "item", "action", "time", "mem", "cpus", "gpu", "frames", "note")]
    for j in jobs:
        rows.append((j.step, j.item, j.action, f"{j.time_min}m", j.mem, str(j.ncpus), "yes" if j.gpu else "no",
                     str(j.nframes or "?"), j.reason))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r[:-1], widths)) + ("  " + r[-1] if r[-1] else "") for r in rows]
    return "\n".join(line.rstrip() for line in lines)
