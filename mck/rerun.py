"""``python -m mck rerun RUN_DIR [KEY=VALUE …]``: run exactly the job recorded in RUN_DIR again, from its config
snapshot (same step, same item, same parameters), optionally with overrides. The new run gets its own run dir
with its own snapshot and record; outputs are recomputed (overwrite=true)."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

import mck.config  # noqa: F401
from mck.config import MckConfig
from mck.errors import ConfigError
from mck.runner import execute

SNAPSHOTS = ("config.resolved.yaml", ".hydra/config.yaml")


def load_snapshot(run_dir: Path, overrides: list[str]):
    for name in SNAPSHOTS:
        path = run_dir / name
        if path.is_file():
            break
    else:
        raise ConfigError(f"{run_dir} holds no config snapshot ({' or '.join(SNAPSHOTS)})",
                          fix="pass a job's run dir under outputs/runs or outputs/sweeps")
    cfg = _read_snapshot(path, run_dir)
    extra = [o for o in overrides if not o.startswith("overwrite=")]
    try:
        cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist(extra), {"overwrite": True})
    except Exception as exc:
        raise ConfigError(f"bad override in {' '.join(extra)}: {str(exc).splitlines()[0]}") from exc
    return cfg, path


def _read_snapshot(path: Path, run_dir: Path):
    """The snapshot merged onto the schema; a damaged or truncated file is one ConfigError naming it and a fix."""
    fix = (f"the snapshot is damaged: restore it, or re-run the job with python -m mck step=… and the overrides "
           f"listed in {run_dir / '.hydra' / 'overrides.yaml'}")
    try:
        text = path.read_text(encoding="utf-8")
        loaded = OmegaConf.create(text)
        if not isinstance(loaded, DictConfig):
            raise ValueError(f"expected a mapping, found {type(loaded).__name__}")
        cfg = OmegaConf.merge(OmegaConf.structured(MckConfig), loaded)
        for key in ("step.name", "step.wrap_params.func_path", "step.output_info.output_name", "project.name",
                    "project.data_root"):
            if OmegaConf.is_missing(cfg, key) or OmegaConf.select(cfg, key) is None:
                raise ValueError(f"{key} is missing")
    except UnicodeDecodeError:
        raise ConfigError("snapshot is not text", item=str(path), fix=fix) from None
    except Exception as exc:  # noqa: BLE001 — yaml, OmegaConf validation: their text names internals
        raise ConfigError(f"cannot use this snapshot: {_reason(exc)}", item=str(path), fix=fix) from None
    return cfg


def _reason(exc: Exception) -> str:
    """One readable clause from a YAML/OmegaConf error (no ``$FULL_KEY`` placeholders)."""
    key = getattr(exc, "full_key", None)
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    text = text.replace("$FULL_KEY", str(key or "?")).replace("$VALUE_TYPE", "").strip()
    if "while parsing" in text or "while scanning" in text or type(exc).__name__.endswith(("ParserError",
                                                                                            "ScannerError")):
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        return f"invalid or truncated YAML{where}"
    return f"{key}: {text}" if key and str(key) not in text else text


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m mck rerun", description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args(argv)
    cfg, snapshot = load_snapshot(args.run_dir, args.overrides)
    new_dir = Path("outputs/runs") / str(cfg.step.name) / (time.strftime("%Y-%m-%d_%H-%M-%S") + "_rerun")
    (new_dir / ".hydra").mkdir(parents=True, exist_ok=True)
    (new_dir / ".hydra" / "config.yaml").write_text(OmegaConf.to_yaml(cfg))
    (new_dir / "rerun_of.txt").write_text(f"{args.run_dir.resolve()}\n{' '.join(args.overrides)}\n")
    handler = logging.FileHandler(new_dir / "rerun.log")
    handler.setFormatter(logging.Formatter("[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"))
    logger = logging.getLogger("mck")
    logger.addHandler(handler)
    logger.addHandler(logging.StreamHandler(sys.stdout))
    logger.setLevel(logging.INFO)
    record = execute(cfg, str(new_dir.resolve()))
    state = record.get("state")
    print(f"mck: rerun of {args.run_dir} → {new_dir}: {record.get('step')} {record.get('item')}: {state}")
    if state == "failed":
        print(f"mck: error: {record.get('error')}", file=sys.stderr)
        return 1
    return 0
