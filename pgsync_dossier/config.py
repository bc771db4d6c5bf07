"""Typed node settings from one YAML file plus PGSYNC_DOSSIER_* environment variables.

Pure: no database code. Every problem is reported as one line naming the file (or the
environment variable), the key and what to do, because the reader is a DBA at a prompt.
"""

from __future__ import annotations

import difflib
import errno
import os
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypedDict, cast

import yaml

from pgsync_dossier.conninfo import has_password, mask_conninfo
from pgsync_dossier.errors import ConfigError
from pgsync_dossier.schedule import Schedule
from pgsync_dossier.token import Secret, masked, token_problem

DEFAULT_CONFIG_PATH = Path("/etc/pgsync-dossier/config.yaml")
CONFIG_PATH_ENV = "PGSYNC_DOSSIER_CONFIG"
ENV_PREFIX = "PGSYNC_DOSSIER_"
ROLES = ("leader", "subscriber", "relay")

#: A relay is a Subscriber that publishes the lists it replicates on to further Subscribers.
Role = Literal["leader", "subscriber", "relay"]

_STRING_KEYS = (
    "node_name",
    "database_url",
    "face_model",
    "sync_token",
    "sync_token_file",
    "replication_url",
    "leader_sslrootcert",
)
_BOOL_KEYS = ("sync_at_startup", "sync_at_creation", "web_ui", "repair_on_divergence")
_BOOL_DEFAULTS = {
    "sync_at_startup": True,
    "sync_at_creation": True,
    "web_ui": False,
    "repair_on_divergence": True,
}
KNOWN_KEYS = (
    "role",
    *_STRING_KEYS,
    "sync_schedule",
    "verify_schedule",
    *_BOOL_KEYS,
    "wal_retention_budget",
    "enrollment",
)
#: When a Subscriber proves its replicas equal, unless its config says otherwise: once a day,
#: at an hour when watch lists are seldom edited ('none' turns it off).
DEFAULT_VERIFY_SCHEDULE = "FREQ=DAILY;BYHOUR=4;BYMINUTE=15"
ENROLLMENT_MODES = ("auto", "manual")
_SIZE_UNITS = {"": 1, "B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3, "TB": 1024**4}
_SIZE = re.compile(r"^\s*(\d+)\s*([KMGT]?B)?\s*$", re.IGNORECASE)
_REQUIRED_KEYS = ("role", "node_name", "database_url", "face_model")


class EffectiveSettings(TypedDict):
    """`config check --json`: the settings in this order, the token masked."""

    source: str
    role: Role
    node_name: str
    database_url: str
    sync_token: str
    face_model: str
    sync_schedule: str | None
    sync_at_startup: bool
    sync_at_creation: bool
    web_ui: bool
    wal_retention_budget: int | None
    replication_url: str | None
    enrollment: str
    leader_sslrootcert: str | None
    verify_schedule: str | None
    repair_on_divergence: bool


@dataclass(frozen=True)
class Config:
    role: Role
    node_name: str
    database_url: str
    sync_token: Secret = field(repr=False)
    face_model: str
    sync_schedule: Schedule | None
    sync_at_startup: bool
    sync_at_creation: bool
    source: str
    web_ui: bool = False
    #: WAL a closed window's slot may hold before status warns, when the Leader sets no
    #: max_slot_wal_keep_size (bytes; None: no warning then)
    wal_retention_budget: int | None = None
    #: On a Leader: the PostgreSQL URL Subscribers stream from, when it is not database_url
    #: (a public name, a multi-host URL); what `serve` tells a Subscriber given its web address
    replication_url: str | None = None
    #: On a Leader: 'manual' makes each new Subscriber wait for `pgsync-dossier approve NODE`
    enrollment: str = "auto"
    #: On a Subscriber: the CA that signs its Leaders' server certificates; every Leader
    #: connection is then verify-full (unless its URL names an sslmode of its own)
    leader_sslrootcert: str | None = None
    #: On a Subscriber: when each replica is verified (None: never, `verify_schedule: none`)
    verify_schedule: Schedule | None = None
    #: On a Subscriber: a scheduled verification that finds differences repairs them at once
    repair_on_divergence: bool = True

    @property
    def publishes(self) -> bool:
        """A Leader, or a relay (for the lists it replicates): Subscribers stream from it."""
        return self.role != "subscriber"

    @property
    def subscribes(self) -> bool:
        """A Subscriber, or a relay: it holds replicas of a Leader's lists."""
        return self.role != "leader"

    def effective(self) -> EffectiveSettings:
        """The settings as a person should see them: the token masked, never revealed."""
        return EffectiveSettings(
            source=self.source,
            role=self.role,
            node_name=self.node_name,
            database_url=mask_conninfo(self.database_url),
            sync_token=masked(self.sync_token),
            face_model=self.face_model,
            sync_schedule=self.sync_schedule.text if self.sync_schedule else None,
            sync_at_startup=self.sync_at_startup,
            sync_at_creation=self.sync_at_creation,
            web_ui=self.web_ui,
            wal_retention_budget=self.wal_retention_budget,
            replication_url=self.replication_url,
            enrollment=self.enrollment,
            leader_sslrootcert=self.leader_sslrootcert,
            verify_schedule=self.verify_schedule.text if self.verify_schedule else None,
            repair_on_divergence=self.repair_on_divergence,
        )


def resolve_path(option: str | None, environ: Mapping[str, str] = os.environ) -> Path:
    """--config, else PGSYNC_DOSSIER_CONFIG, else the system-wide default."""
    if option:
        return Path(option)
    if environ.get(CONFIG_PATH_ENV):
        return Path(environ[CONFIG_PATH_ENV])
    return DEFAULT_CONFIG_PATH


def load(path: Path, environ: Mapping[str, str] = os.environ) -> Config:
    raw = _read_yaml(path)
    where = str(path)
    values: dict[str, tuple[object, str]] = {}
    for key, value in raw.items():
        if not isinstance(key, str) or key not in KNOWN_KEYS:
            raise ConfigError(f"{where}: unknown key {key!r}{_did_you_mean(key)}; remove it")
        values[key] = (value, f"{where}: {key}")
    for key in KNOWN_KEYS:
        env_name = ENV_PREFIX + key.upper()
        if env_name in environ:
            values[key] = (_from_env(key, environ[env_name]), f"environment variable {env_name}")
    if ENV_PREFIX + "SYNC_TOKEN" in environ:
        values.pop("sync_token_file", None)
    return _build(values, where, path.parent)


#: Bigger than any config or token file: a path to /dev/zero or a log must not fill memory.
MAX_FILE_BYTES = 1 << 20


def read_small_text(path: Path) -> str:
    """A file's text, refused when it is larger than MAX_FILE_BYTES (read no further)."""
    with path.open("rb") as handle:
        data = handle.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        raise OSError(errno.EFBIG, f"larger than {MAX_FILE_BYTES} bytes")
    return data.decode("utf-8")


class _UniqueKeyLoader(yaml.SafeLoader):
    """A YAML key given twice is an error, not a silent override (a second `role:`)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _value_node in node.value:
            key = self.construct_object(key_node, deep=deep)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise ConfigError(f"key {key!r} is given twice (lines {seen[key]} and {line}); keep one")
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


def _read_yaml(path: Path) -> dict[Any, Any]:
    try:
        text = read_small_text(path)
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: config file not found; write one with "
            f"'pgsync-dossier init-config --role leader|subscriber|relay {path}' or pass --config PATH"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConfigError(f"{path}: cannot read the config file ({reason})") from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(f"{path}: invalid YAML{at}: {problem}; fix the syntax") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the file must be a mapping of 'key: value' lines")
    return data


def _from_env(key: str, text: str) -> object:
    if key in _BOOL_KEYS:
        lowered = text.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        return text  # rejected below as "must be true or false"
    return text


def _build(values: dict[str, tuple[object, str]], where: str, base_dir: Path) -> Config:
    for key in _REQUIRED_KEYS:
        if key not in values or values[key][0] in (None, ""):
            raise ConfigError(f"{where}: {key} is required; {_HINTS[key]}")
    strings: dict[str, str] = {}
    for key in (*_STRING_KEYS, "role", "sync_schedule", "verify_schedule", "enrollment"):
        if key in values and values[key][0] is not None:
            value, origin = values[key]
            if not isinstance(value, str):
                raise ConfigError(f"{origin}: must be a string, not {_yaml_type(value)}")
            if key not in ("sync_schedule", "verify_schedule") and any(
                unicodedata.category(c) == "Cc" for c in value.strip()
            ):
                raise ConfigError(f"{origin}: holds control characters (a newline, an escape); remove them")
            strings[key] = value.strip()
    role = strings["role"]
    if role not in ROLES:
        raise ConfigError(f"{values['role'][1]}: must be 'leader', 'subscriber' or 'relay', not {role!r}")
    flags: dict[str, bool] = {}
    for key in _BOOL_KEYS:
        value, origin = values.get(key, (_BOOL_DEFAULTS[key], key))
        if value is None:
            value = _BOOL_DEFAULTS[key]
        if not isinstance(value, bool):
            raise ConfigError(f"{origin}: must be true or false, not {value!r}")
        flags[key] = value
    token = _token(values, strings, where, base_dir)
    schedule = None
    if strings.get("sync_schedule"):
        try:
            schedule = Schedule.parse(strings["sync_schedule"])
        except ValueError as exc:
            raise ConfigError(
                f"{values['sync_schedule'][1]}: invalid RRULE: {exc}; "
                "e.g. 'FREQ=DAILY;BYHOUR=3', or remove the key for continuous sync"
            ) from None
    verify_schedule = _verify_schedule(strings, values, role)
    budget = _size(values["wal_retention_budget"]) if "wal_retention_budget" in values else None
    replication_url = strings.get("replication_url") or None
    if replication_url is not None:
        origin = values["replication_url"][1]
        if role == "subscriber":
            raise ConfigError(f"{origin}: is a Leader setting (where Subscribers stream from); remove it")
        if has_password(replication_url):
            raise ConfigError(
                f"{origin}: holds a password; give only where the Leader is "
                "(Subscribers log in with the token)"
            )
    enrollment = strings.get("enrollment") or "auto"
    if "enrollment" in strings:
        origin = values["enrollment"][1]
        if role == "subscriber":
            raise ConfigError(f"{origin}: is a Leader setting (who may enroll); remove it")
        if enrollment not in ENROLLMENT_MODES:
            raise ConfigError(f"{origin}: must be 'auto' or 'manual', not {enrollment!r}")
    rootcert = None
    if strings.get("leader_sslrootcert"):
        origin = values["leader_sslrootcert"][1]
        if role == "leader":
            raise ConfigError(f"{origin}: is a Subscriber setting (the CA of its Leaders); remove it")
        path = (base_dir / Path(strings["leader_sslrootcert"]).expanduser()).resolve()
        if not path.is_file():
            raise ConfigError(
                f"{origin}: {path} is not a file; give the CA certificate that signs the Leader's"
            )
        rootcert = str(path)
    return Config(
        role=cast(Role, role),
        node_name=strings["node_name"],
        database_url=strings["database_url"],
        sync_token=token,
        face_model=strings["face_model"],
        sync_schedule=schedule,
        sync_at_startup=flags["sync_at_startup"],
        sync_at_creation=flags["sync_at_creation"],
        source=where,
        web_ui=flags["web_ui"],
        wal_retention_budget=budget,
        replication_url=replication_url,
        enrollment=enrollment,
        leader_sslrootcert=rootcert,
        verify_schedule=verify_schedule,
        repair_on_divergence=flags["repair_on_divergence"],
    )


def _verify_schedule(
    strings: dict[str, str], values: dict[str, tuple[object, str]], role: str
) -> Schedule | None:
    """A Subscriber's verify_schedule: the default, an RRULE, or 'none'."""
    text = strings.get("verify_schedule")
    if text is not None and role == "leader":
        raise ConfigError(
            f"{values['verify_schedule'][1]}: is a Subscriber setting (when replicas are verified); remove it"
        )
    if role == "leader" or (text or "").lower() == "none":
        return None
    try:
        return Schedule.parse(text or DEFAULT_VERIFY_SCHEDULE)
    except ValueError as exc:
        raise ConfigError(
            f"{values['verify_schedule'][1]}: invalid RRULE: {exc}; e.g. 'FREQ=DAILY;BYHOUR=4', "
            "or 'none' to verify only when asked"
        ) from None


def _size(entry: tuple[object, str]) -> int | None:
    """A size as PostgreSQL writes them (10GB, 512MB, 4096) in bytes; None stays None."""
    value, origin = entry
    if value is None:
        return None
    match = _SIZE.match(str(value)) if isinstance(value, str | int) and not isinstance(value, bool) else None
    if match is None or int(match.group(1)) <= 0:
        raise ConfigError(f"{origin}: must be a positive size like 10GB or 512MB, not {value!r}")
    return int(match.group(1)) * _SIZE_UNITS[(match.group(2) or "").upper()]


def _token(
    values: dict[str, tuple[object, str]], strings: dict[str, str], where: str, base_dir: Path
) -> Secret:
    if "sync_token" in strings and "sync_token_file" in strings:
        raise ConfigError(f"{where}: sync_token and sync_token_file are both set; keep one")
    if "sync_token" in strings:
        token, origin = strings["sync_token"], values["sync_token"][1]
    elif "sync_token_file" in strings:
        origin = values["sync_token_file"][1]
        token_path = base_dir / Path(strings["sync_token_file"]).expanduser()
        try:
            token = read_small_text(token_path).strip()
        except OSError as exc:
            if exc.errno == errno.EFBIG:
                raise ConfigError(
                    f"{origin}: the token file {token_path} is {exc.strerror}; it must hold the token alone"
                ) from None
            raise ConfigError(
                f"{origin}: cannot read the token file {token_path}; "
                "check the path and that this user may read it"
            ) from None
        except UnicodeDecodeError:
            raise ConfigError(f"{origin}: the token file {token_path} is not UTF-8 text") from None
    else:
        raise ConfigError(f"{where}: sync_token is required; {_HINTS['sync_token']}")
    problem = token_problem(token)
    if problem:
        raise ConfigError(
            f"{origin}: the sync token {problem}; use the same long random token on every node "
            "(init-config generates one)"
        )
    return Secret(token)


_HINTS = {
    "role": "set it to 'leader', 'subscriber' or 'relay'",
    "node_name": "name this node, e.g. 'node_name: site-paris'",
    "database_url": "set the dossier database's URL, e.g. 'postgresql://pgsync@localhost/dossiers'",
    "face_model": "set the face model's identifier, identical on every node",
    "sync_token": "set sync_token or sync_token_file (identical on every node), "
    "or the environment variable PGSYNC_DOSSIER_SYNC_TOKEN",
}


def _did_you_mean(key: object) -> str:
    close = difflib.get_close_matches(str(key), KNOWN_KEYS, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _yaml_type(value: object) -> str:
    return {bool: "a boolean", int: "a number", float: "a number", list: "a list", dict: "a mapping"}.get(
        type(value), type(value).__name__
    )
