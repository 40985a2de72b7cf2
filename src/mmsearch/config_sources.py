"""Where each setting's value comes from (a default, the config file, an `MMSEARCH_*` variable, an option), with
secrets masked: plain data that `mmsearch config show` renders, kept here so the command holds no logic and the
masking rule sits next to the settings it protects."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmsearch.config import ENV_PREFIX, ConfigFileSource, Settings, config_path

MASK = "***"
# Secrets by name: the explicit set, and a rule so that a new `*_token`, `*_key`, `*_password` or `*_secret`
# setting is masked without anyone remembering to add it here (masking a harmless value is the safe mistake).
SECRET_SETTINGS = frozenset({"admin_token", "llm_api_key"})
SECRET_WORDS = ("secret", "token", "key", "password", "passwd", "credential")
# user:password@ in any URL (catalog_url, staging_url, llm_url, a milvus: store...): the greedy password runs to
# the authority's last '@', so a password holding a raw '@' is masked whole
_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^:/?#@\s]*):[^/?#\s]*@")
# ?token=...&api_key=... in a URL's query string
_QUERY_SECRET = re.compile(
    r"(?P<head>[?&][^=&#\s]*(?:secret|token|key|password|passwd|credential|signature)[^=&#\s]*=)[^&#\s]*", re.I
)


@dataclass(frozen=True)
class SettingValue:
    """One setting as it is in effect: `source` is `default`, `file:<path>`, `env:<VARIABLE>` or the label the
    caller gave its overrides (the CLI's `option:--home`)."""

    name: str
    value: Any  # JSON-ready (paths as strings), masked unless asked otherwise
    source: str


@dataclass(frozen=True)
class ConfigReport:
    """The settings in effect and the config file they were read from (None: no file)."""

    file: Path | None
    settings: list[SettingValue]

    def as_dict(self) -> dict[str, Any]:
        return {"file": str(self.file) if self.file else None,
                "settings": {s.name: {"value": s.value, "source": s.source} for s in self.settings}}


def is_secret(name: str) -> bool:
    """Whether a setting's whole value is a credential, by the explicit set or by its name."""
    return name in SECRET_SETTINGS or any(word in name.lower() for word in SECRET_WORDS)


def mask(name: str, value: Any) -> Any:
    """The value fit to print: a secret setting as `***` (empty or unset stays so, which tells it is not set);
    any other string with the password of a `user:password@` URL and secret query parameters masked."""
    if is_secret(name):
        return MASK if value not in (None, "") else value
    if isinstance(value, str):
        value = _URL_PASSWORD.sub(rf"\g<head>:{MASK}@", value)
        value = _QUERY_SECRET.sub(rf"\g<head>{MASK}", value)
    return value


def describe_settings(overrides: Mapping[str, Any] | None = None, override_source: str = "init",
                      masked: bool = True) -> ConfigReport:
    """Every setting of `Settings(**overrides)` with its value and source, in declaration order. Sources are
    decided with the precedence `Settings` applies (overrides > environment > file > default); an error of the
    config file raises its ConfigError, as `Settings()` would."""
    overrides = dict(overrides or {})
    settings = Settings(**overrides)
    path = config_path()
    in_file = ConfigFileSource(Settings, path).toml_data if path else {}
    # pydantic-settings matches MMSEARCH_* names case-insensitively; report the variable as it is spelt
    env_names = {name.lower(): name for name in os.environ}
    values = settings.model_dump(mode="json")
    rows: list[SettingValue] = []
    for name in Settings.model_fields:
        variable = env_names.get(f"{ENV_PREFIX}{name}".lower())
        if name in overrides:
            source = override_source
        elif variable is not None:
            source = f"env:{variable}"
        elif name in in_file:
            source = f"file:{path}"
        else:
            source = "default"
        rows.append(SettingValue(name, mask(name, values[name]) if masked else values[name], source))
    return ConfigReport(path, rows)
