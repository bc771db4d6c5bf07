"""What every command may need: the config, loaded once and only when asked for."""

from __future__ import annotations

from dataclasses import dataclass, field

import click

from pgsync_dossier import config as config_module
from pgsync_dossier.config import Config


@dataclass
class AppContext:
    config_option: str | None
    debug: bool = False
    _config: Config | None = field(default=None, repr=False)

    @property
    def config(self) -> Config:
        if self._config is None:
            self._config = config_module.load(config_module.resolve_path(self.config_option))
        return self._config


pass_app = click.make_pass_decorator(AppContext)
