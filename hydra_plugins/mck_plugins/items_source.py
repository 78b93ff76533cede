"""Videos, sessions and calibrations on disk as options of the config groups ``video``, ``session`` and
``calibration``.

``MckItemsSource`` is a Hydra ConfigSource with its own URL scheme (``mckitems://DATA_ROOT?s=SETTINGS``);
``MckItemsSearchPath`` appends it to the search path of mck's own app only. The settings (data root, cameras, …)
come from ``MCK_ITEMS_URL``, which ``python -m mck`` sets from the project config and the command line before
Hydra composes; without it the default project's settings are used. The URL travels with the pickled config
loader, so a SLURM node sees the same items. Options are listed fresh on every run, so adding or removing videos
needs no manual step; ``is_config`` checks one file and never rescans.
"""

from __future__ import annotations

import os
from typing import List, Optional

from omegaconf import OmegaConf

from hydra.core.config_search_path import ConfigSearchPath
from hydra.core.object_type import ObjectType
from hydra.plugins.config_source import ConfigLoadError, ConfigResult, ConfigSource
from hydra.plugins.search_path_plugin import SearchPathPlugin

from mck import inventory
from mck.errors import MckError

ENV_URL = "MCK_ITEMS_URL"


class MckItemsSource(ConfigSource):
    def __init__(self, provider: str, path: str) -> None:
        super().__init__(provider=provider, path=path)
        try:
            self.settings: inventory.Settings | None = inventory.Settings.from_url(self.full_path())
        except (KeyError, ValueError, TypeError):
            self.settings = None   # composing before the data root is known (mck.preparse): no items

    @staticmethod
    def scheme() -> str:
        return "mckitems"

    @staticmethod
    def _split(config_path: str) -> tuple[str, str]:
        config_path = config_path.strip("/")
        if config_path.endswith(".yaml"):
            config_path = config_path[: -len(".yaml")]
        group, _, name = config_path.partition("/")
        return group, name

    def load_config(self, config_path: str) -> ConfigResult:
        group, name = self._split(config_path)
        item = inventory.find_item(self.settings, group, name) \
            if group in inventory.ITEM_GROUPS and self.settings is not None else None
        if item is None:
            raise ConfigLoadError(f"{group} {name!r} not found under {self.settings.data_root}")
        calibration = None
        if group != "calibration":
            try:
                calibration = inventory.match_calibration(self.settings, item.session)
            except MckError as exc:
                calibration = (None, exc.one_line())
        node = inventory.item_node(self.settings, item, calibration)
        return ConfigResult(config=OmegaConf.create(node), path=self.full_path(), provider=self.provider,
                            header={"package": None})

    def available(self) -> bool:
        return self.settings is not None and os.path.isdir(self.settings.data_root)

    def is_group(self, config_path: str) -> bool:
        return config_path.strip("/") in inventory.ITEM_GROUPS

    def is_config(self, config_path: str) -> bool:
        group, name = self._split(config_path)
        if group not in inventory.ITEM_GROUPS or not name or self.settings is None:
            return False
        return inventory.find_item(self.settings, group, name) is not None

    def list(self, config_path: str, results_filter: Optional[ObjectType]) -> List[str]:
        group = config_path.strip("/")
        if group == "":
            return list(inventory.ITEM_GROUPS) if results_filter in (None, ObjectType.GROUP) else []
        if group not in inventory.ITEM_GROUPS or results_filter == ObjectType.GROUP or self.settings is None:
            return []
        try:
            return inventory.list_names(self.settings, group)
        except MckError:
            return []


class MckItemsSearchPath(SearchPathPlugin):
    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        from mck.config import CONF_DIR

        mains = [e.path for e in search_path.get_path() if e.provider == "main"]
        if not any(os.path.realpath(p.split("://", 1)[-1]) == str(CONF_DIR) for p in mains):
            return  # another Hydra app in the same environment: leave it alone
        url = os.environ.get(ENV_URL)
        if not url:
            from mck.preparse import default_settings

            url = default_settings().to_url()
        search_path.append("mck-items", url)
