"""What mck must know before Hydra composes a job: the project (data root, naming settings) as Hydra itself composes
it — project file, experiment, ``project.*`` overrides, anything else that reaches ``project`` — through Hydra's
compose API, with the item groups left out (they are what this is needed to find)."""

from __future__ import annotations

import os

from omegaconf import DictConfig

import mck.config  # noqa: F401  (registers the resolvers the project files use)
from mck.config import CONF_DIR
from mck.errors import ConfigError
from mck.inventory import ITEM_GROUPS, Settings

#: While set, the items config source lists nothing (composition before the data root is known).
_NO_ITEMS = "mckitems:///?s=none"


def _composable(overrides: list[str], with_items: bool = False) -> list[str]:
    """The overrides that shape ``project`` and the root: no item choices, no sweeps (their first value would be a
    guess), no Hydra settings."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    kept = []
    for text in overrides:
        if text.startswith("-"):
            continue
        key = text.split("=", 1)[0].lstrip("+~")
        if (key in ITEM_GROUPS and not with_items) or key.startswith("hydra.") \
                or ("=" not in text and text[0] != "~"):
            continue
        try:
            override = parser.parse_override(text)
        except Exception as exc:
            raise ConfigError(f"cannot parse override {text!r}: {str(exc).splitlines()[-1]}",
                              fix="quote values with special characters: key='value'") from exc
        if override.is_sweep_override():
            continue
        kept.append(text)
    return kept


def compose_root(overrides: list[str], *, with_items: bool = False, return_hydra: bool = False) -> DictConfig:
    """The root config (``project``, ``steps``, ``variants``, …) exactly as Hydra composes it for these overrides.
    ``with_items``: keep the item choices (``video=…``; ``MCK_ITEMS_URL`` must be set, see :func:`export_settings`)
    — the config of one job; ``return_hydra``: include ``hydra`` (the launcher)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from hydra_plugins.mck_plugins.items_source import ENV_URL

    previous = os.environ.get(ENV_URL)
    if not with_items or not previous:
        os.environ[ENV_URL] = _NO_ITEMS
    was_initialized = GlobalHydra.instance().is_initialized()
    saved = GlobalHydra.instance().hydra if was_initialized else None
    try:
        if was_initialized:
            GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            try:
                cfg = compose(config_name="config", overrides=_composable(overrides, with_items),
                              return_hydra_config=return_hydra)
            except Exception as exc:
                from mck.__main__ import _hydra_message

                raise ConfigError(_hydra_message(exc)) from exc
    finally:
        if previous is None:
            os.environ.pop(ENV_URL, None)
        else:
            os.environ[ENV_URL] = previous
        if saved is not None:
            GlobalHydra.instance().initialize(saved)
    return cfg


def project_config(overrides: list[str]) -> DictConfig:
    """The resolved ``project`` node as Hydra composes it for these overrides."""
    cfg = compose_root(overrides)
    try:
        from omegaconf import OmegaConf

        OmegaConf.resolve(cfg.project)
    except Exception as exc:  # interpolation errors in the project file
        raise ConfigError(f"cannot resolve the project config: {str(exc).splitlines()[0]}",
                          fix="check conf/project/*.yaml and the project.* overrides") from exc
    return cfg.project


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
