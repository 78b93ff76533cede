"""Every conf/step/*.yaml composes through Hydra against the structured schema; bad values fail at composition."""

from __future__ import annotations

import inspect
import importlib
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from mck.config import CONF_DIR, LEVELS
from mck.inventory import Settings
from tests.conftest import make_project

STEPS = sorted(p.stem for p in (CONF_DIR / "step").glob("*.yaml"))
REQUIRED_STEPS = {"probe", "calibration", "centernet", "hrnet", "triangulation", "gimbal", "qc", "compression",
                  "train_centernet", "train_hrnet", "fit_gimbal"}
SCHEMA_KEYS = {"name", "slurm_params", "wrap_params", "func_args", "func_kwargs", "output_info",
               "step_dependencies", "pipeline_info", "inputs"}


@pytest.fixture(scope="module")
def items_env(tmp_path_factory):
    data = make_project(tmp_path_factory.mktemp("cfg") / "data", frames=3)
    settings = Settings(data_root=str(data), output_root=str(data))
    mp = pytest.MonkeyPatch()
    mp.setenv("MCK_ITEMS_URL", settings.to_url())
    mp.setenv("MCK_DATA_ROOT", str(data))
    yield data
    mp.undo()


def _compose(overrides):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="config", overrides=overrides)


def test_all_required_steps_have_configs():
    assert REQUIRED_STEPS <= set(STEPS)


@pytest.mark.parametrize("name", STEPS)
def test_step_config_composes_with_the_seed_schema(name, items_env):
    cfg = _compose([f"step={name}", "video=20240422_J04301.top", "session=20240422_J04301",
                    "calibration=20240422_calibration"])
    step = cfg.step
    assert set(step.keys()) == SCHEMA_KEYS
    assert step.name == name
    assert step.pipeline_info.processing_level in LEVELS
    for dep in step.step_dependencies:
        assert dep in STEPS, f"{name} depends on unknown step {dep}"
    OmegaConf.to_container(step.func_args, resolve=True)  # every interpolation resolves for a real item
    assert step.output_info.output_name
    module, _, func = step.wrap_params.func_path.rpartition(".")
    try:
        fn = getattr(importlib.import_module(module), func)
    except ModuleNotFoundError:
        pytest.skip(f"step {name} is not implemented yet")
    params = inspect.signature(fn).parameters
    for dep in step.inputs.values():
        assert dep.step in STEPS, f"{name} reads unknown step {dep.step}"
    for key in list(step.func_args) + list(step.func_kwargs) + list(step.inputs):
        assert key in params or any(p.kind is p.VAR_KEYWORD for p in params.values()), (name, key)


def test_items_are_group_options(items_env):
    cfg = _compose(["step=probe", "video=20240422_J04302.side3"])
    assert cfg.video.camera == "side3" and cfg.video.view == "side" and cfg.video.session == "20240422_J04302"
    assert Path(cfg.video.path).is_file()
    cfg = _compose(["step=triangulation", "session=20240422_J04302"])
    assert list(cfg.session.videos) == ["top", "side1", "side2", "side3", "side4", "bottom"]
    assert cfg.session.calibration == "20240422_calibration"
    assert "calibration_params" not in cfg.session   # producers' files come from the graph (mck.graph), not items
    assert cfg.session.alignment is None


@pytest.mark.parametrize("override, fragment", [
    ("step.slurm_params.gpu=sometimes", "gpu"),
    ("step.slurm_params.min_minutes=ten", "min_minutes"),
    ("step.unknown_section=1", "unknown_section"),
    ("overwrite=perhaps", "overwrite"),
])
def test_bad_values_fail_at_composition(override, fragment, items_env):
    with pytest.raises(Exception) as info:
        _compose(["step=probe", override])
    assert fragment in str(info.value) or fragment in str(info.value.__cause__)


def test_cores_do_not_import_config_launch_or_io_libraries():
    """Layers point one way: pure cores never import Hydra, OmegaConf, submitit or h5py."""
    import re

    root = Path(__file__).resolve().parents[2] / "mck"
    pattern = re.compile(r"^\s*(import|from)\s+(hydra|omegaconf|submitit|h5py)\b", re.M)
    offenders = []
    for core in ("geometry", "calibration", "detection", "gimbal", "synth"):
        for path in (root / core).rglob("*.py") if (root / core).is_dir() else []:
            if pattern.search(path.read_text()):
                offenders.append(str(path.relative_to(root)))
    assert not offenders, f"pure cores import config/launch/I-O libraries: {offenders}"


def test_run_folder_names_are_cut_with_a_hash_of_the_overrides():
    from mck.config import MAX_DIRNAME, short_dirname

    assert short_dirname("") == "" and short_dirname("seed=1,video=a.top") == "seed=1,video=a.top"
    long_a = ",".join(f"step.func_kwargs.k{i}=é{i}" for i in range(40))
    long_b = long_a[:-1] + "X"
    cut_a, cut_b = short_dirname(long_a), short_dirname(long_b)
    assert len(cut_a.encode()) <= MAX_DIRNAME and len(cut_b.encode()) <= MAX_DIRNAME
    assert cut_a != cut_b and cut_a == short_dirname(long_a)
    assert cut_a.startswith("step.func_kwargs.k0=é0,")
