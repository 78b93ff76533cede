"""Structured configs (types and defaults) for every config group, registered in Hydra's ConfigStore, and the
OmegaConf resolvers mck's YAML uses. Importing this module is enough to compose mck configs.

Validation happens once, at composition: an unknown key or a value of the wrong type fails there with the key and
the value named; after that the config is read-only.
"""

from __future__ import annotations

import fnmatch
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, OmegaConf

REPO_ROOT = Path(__file__).resolve().parent.parent
CONF_DIR = REPO_ROOT / "conf"
LEVELS = ("video", "session", "calibration", "project")


@dataclass
class PipelineInfo:
    processing_level: str = "video"  # video | session | calibration | project


@dataclass
class SlurmParams:
    mem: str = "4GB"
    gpu: bool = False
    ncpus: int = 1
    sec_per_frame: float = 0.0
    min_minutes: int = 10


@dataclass
class WrapParams:
    func_path: str = MISSING
    conda_env: Optional[str] = None
    modules: List[str] = field(default_factory=list)


@dataclass
class OutputInfo:
    output_name: str = MISSING
    also: List[str] = field(default_factory=list)   # further outputs beside the primary one; all must exist
    output_dir: Optional[str] = None                 # project-level steps: where outputs go (default output_root)


@dataclass
class StepConfig:
    name: str = MISSING
    pipeline_info: PipelineInfo = field(default_factory=PipelineInfo)
    step_dependencies: List[str] = field(default_factory=list)   # order-only edges; inputs add the rest
    inputs: Dict[str, Any] = field(default_factory=dict)          # param → {step, output?, optional?, path?, items?}
    slurm_params: SlurmParams = field(default_factory=SlurmParams)
    wrap_params: WrapParams = field(default_factory=WrapParams)
    func_args: Dict[str, Any] = field(default_factory=dict)
    func_kwargs: Dict[str, Any] = field(default_factory=dict)
    output_info: OutputInfo = field(default_factory=OutputInfo)


@dataclass
class HrnetWeights:
    top: str = MISSING
    side: str = MISSING
    bottom: str = MISSING


@dataclass
class Weights:
    centernet: str = MISSING
    hrnet: HrnetWeights = field(default_factory=HrnetWeights)
    gimbal_params: str = MISSING


@dataclass
class ProjectConfig:
    name: str = MISSING
    data_root: str = MISSING
    output_root: str = MISSING
    cameras: List[str] = field(default_factory=lambda: ["top", "side1", "side2", "side3", "side4", "bottom"])
    views: Dict[str, str] = field(default_factory=dict)
    video_extensions: List[str] = field(default_factory=lambda: ["mp4", "avi"])
    calibration_pattern: str = "*calib*"
    calibration_map: Dict[str, str] = field(default_factory=dict)
    alignment_file: str = "aligned_frame_numbers.csv"
    board_shape: List[int] = field(default_factory=lambda: [5, 7])
    square_size: float = 12.5
    labels_dir: str = MISSING
    weights_dir: str = MISSING
    weights: Weights = field(default_factory=Weights)
    fit_sessions: List[str] = field(default_factory=list)
    allow_missing_cameras: bool = False   # a session without one of `cameras` runs (with a recorded warning)
    calibration_source: str = "board"     # board | refined: the camera file triangulation/gimbal/sync_check read
    sync: str = "off"                     # off | auto: triangulation/gimbal use the alignment sync_check detected


@dataclass
class MckConfig:
    project: ProjectConfig = MISSING
    step: StepConfig = MISSING
    video: Optional[Dict[str, Any]] = None
    session: Optional[Dict[str, Any]] = None
    calibration: Optional[Dict[str, Any]] = None
    steps: Dict[str, Any] = field(default_factory=dict)      # per-step overrides (experiments): steps.hrnet.func_kwargs…
    variants: Dict[str, str] = field(default_factory=dict)   # step → variant tag: outputs keypoints.v2.h5, downstream too
    demo: Dict[str, Any] = field(default_factory=dict)       # what `python -m mck demo` generates (experiments)
    overwrite: bool = False
    dry_run: bool = False
    debug: bool = False
    time_scale: float = 1.0
    seed: int = 0


def _register() -> None:
    cs = ConfigStore.instance()
    cs.store(name="schema", node=MckConfig)
    if not OmegaConf.has_resolver("mck_root"):
        OmegaConf.register_new_resolver("mck_root", lambda: str(REPO_ROOT))
    if not OmegaConf.has_resolver("mck_session_files"):
        OmegaConf.register_new_resolver("mck_session_files", _session_files)
    if not OmegaConf.has_resolver("mck_dirname"):
        OmegaConf.register_new_resolver("mck_dirname", short_dirname)


#: Longest run-folder name part made from the overrides (file systems allow 255 bytes per name).
MAX_DIRNAME = 120


def short_dirname(overrides: str) -> str:
    """``${mck_dirname:${hydra.job.override_dirname}}``: the overrides as a folder name, cut to ``MAX_DIRNAME``
    bytes with a hash of the whole so that long override lists stay distinct and valid. A ``/`` in a value (a path,
    or ``../..``) becomes ``_``: the run dir stays one folder under ``outputs/runs/STEP/``."""
    overrides = overrides.replace("/", "_").replace("\\", "_")
    if len(overrides.encode()) <= MAX_DIRNAME:
        return overrides
    digest = hashlib.sha1(overrides.encode()).hexdigest()[:10]
    head = overrides.encode()[: MAX_DIRNAME - len(digest) - 1].decode(errors="ignore")
    return f"{head}_{digest}"


def _session_files(key: str, *, _root_) -> Dict[str, str]:
    """``${mck_session_files:alignment}``: session → that file of the session's config node (absolute paths), for
    every session that has one. (Outputs of steps are declared ``inputs``, not resolved here.)"""
    from mck.inventory import inventory_for_project

    inventory = inventory_for_project(_root_.project)
    out = {}
    for name in sorted(inventory.sessions):
        path = inventory.node("session", name).get(key)
        if path:
            out[name] = str(path)
    return out

_register()


def split_outside_brackets(text: str, sep: str = ",") -> list[str]:
    """``'a-[1-3,7],b'`` → ``['a-[1-3,7]', 'b']``: split at ``sep`` where no ``[…]`` is open (host lists, glob
    arguments)."""
    parts, depth, part = [], 0, ""
    for ch in text:
        depth += ch == "["
        depth -= ch == "]"
        if ch == sep and depth == 0:
            parts.append(part)
            part = ""
        else:
            part += ch
    parts.append(part)
    return parts


def glob_patterns(inner: str) -> tuple[list[str], list[str]]:
    """Hydra's ``glob(include[, exclude])`` arguments (positional or ``include=``/``exclude=``, each a pattern or a
    list ``[a,b]``) → (include patterns, exclude patterns)."""
    args = split_outside_brackets(inner.strip())
    found: dict[str, list[str]] = {"include": [], "exclude": []}
    for i, arg in enumerate(a.strip() for a in args):
        key, sep, value = arg.partition("=")
        if not sep or key.strip() not in found:
            key, value = ("include", "exclude")[min(i, 1)], arg
        value = value.strip()
        values = value[1:-1].split(",") if value.startswith("[") and value.endswith("]") else [value]
        found[key.strip()] += [v.strip().strip("'\"") for v in values if v.strip()]
    return found["include"] or ["*"], found["exclude"]


def glob_matches(names, inner: str) -> list[str]:
    """The names that ``glob(inner)`` selects (fnmatch patterns, excludes win)."""
    include, exclude = glob_patterns(inner)
    return [n for n in names if any(fnmatch.fnmatchcase(n, p) for p in include)
            and not any(fnmatch.fnmatchcase(n, p) for p in exclude)]
