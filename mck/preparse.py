"""What mck must know before Hydra composes: the project's data root and naming settings, read from the project
config file and the ``project=…`` / ``project.KEY=…`` overrides on the command line."""

from __future__ import annotations

import os

from omegaconf import DictConfig, OmegaConf

import mck.config  # noqa: F401  (registers the resolvers the project files use)
from mck.config import CONF_DIR
from mck.errors import ConfigError
from mck.inventory import Settings


def default_project_name() -> str:
    defaults = OmegaConf.load(CONF_DIR / "config.yaml").get("defaults", [])
    for entry in defaults:
        if isinstance(entry, (dict, DictConfig)) and "project" in entry:
            return str(entry["project"])
    return "demo"


def project_config(overrides: list[str]) -> DictConfig:
    """The resolved ``project`` node as Hydra will compose it (project file + ``project.*`` overrides)."""
    name = default_project_name()
    for override in overrides:
        if override.startswith("project="):
            name = override.split("=", 1)[1]
    path = CONF_DIR / "project" / f"{name}.yaml"
    if not path.is_file():
        options = sorted(p.stem for p in (CONF_DIR / "project").glob("*.yaml"))
        raise ConfigError(f"no project config {name!r}", fix=f"choose one of: {', '.join(options)}")
    root = OmegaConf.create({"project": OmegaConf.load(path)})
    from hydra.core.override_parser.overrides_parser import OverridesParser

    wanted = [o for o in overrides if o.lstrip("+").startswith("project.")]
    if wanted:
        try:
            parsed = OverridesParser.create().parse_overrides(wanted)
        except Exception as exc:
            raise ConfigError(f"cannot parse {' '.join(wanted)}: {str(exc).splitlines()[0]}") from exc
        for override in parsed:
            value = override.value()
            value = OmegaConf.to_container(OmegaConf.create({"v": value}))["v"] if value is not None else None
            OmegaConf.update(root, override.key_or_group, value, merge=True)
    try:
        OmegaConf.resolve(root)
    except Exception as exc:  # interpolation errors in the project file
        raise ConfigError(f"cannot resolve project config {path}: {exc}") from exc
    return root.project


def settings_from_overrides(overrides: list[str]) -> Settings:
    return Settings.from_project(project_config(overrides))


def default_settings() -> Settings:
    return settings_from_overrides([])


def export_settings(overrides: list[str]) -> Settings:
    """Compute the settings and publish them for the items config source (``MCK_ITEMS_URL``)."""
    from hydra_plugins.mck_plugins.items_source import ENV_URL

    settings = settings_from_overrides(overrides)
    os.environ[ENV_URL] = settings.to_url()
    return settings
