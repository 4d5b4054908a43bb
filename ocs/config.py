"""Boot settings: what a process needs before it can reach the database.

Read from environment variables (names are a contract with provisioning scripts and
tests) over an optional TOML file (`OCS_CONFIG` or `<data dir>/ocs.toml`). Operator
parameters that can change at run time live in the database (`ocs.settings_store`).
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """A boot setting is missing or malformed."""


_DEFAULT_MAX_MESSAGE = 64 * 1024
_DEFAULT_PRE_CER_MAX = 8 * 1024


@dataclass(frozen=True, slots=True)
class Settings:
    data_dir: Path
    database_url: str
    web_host: str = "127.0.0.1"
    web_port: int = 8078
    diameter_host: str = "127.0.0.1"
    diameter_port: int = 3868
    diameter_origin_host: str = "ocs.localdomain"
    diameter_realm: str = "localdomain"
    diameter_peers: tuple[str, ...] = ("*",)
    sip_host: str = "127.0.0.1"
    sip_port: int = 5060
    mqtt_url: str | None = None
    tcc_grace: float = 10.0  # seconds past Validity-Time before a silent session is closed
    # Diameter resource bounds (a hostile peer must not exhaust memory; see README)
    diameter_max_message: int = _DEFAULT_MAX_MESSAGE  # one message after CER (longer: 5015)
    diameter_pre_cer_max: int = _DEFAULT_PRE_CER_MAX  # one message before CER (longer: closed)
    diameter_max_connections: int = 512  # beyond: the oldest connection without CER goes
    diameter_max_buffered: int = 16 * 1024 * 1024  # partial messages held, all connections
    # Diameter over TLS (RFC 6733 13): a second listener, mutual certificate authentication
    diameter_tls_port: int | None = None  # 5658 by convention; unset = no TLS listener
    diameter_tls_cert: Path | None = None  # our certificate chain (PEM)
    diameter_tls_key: Path | None = None  # its private key (PEM)
    diameter_tls_ca: Path | None = None  # CA(s) that sign the peers' certificates (PEM)
    # `ocs serve` processes sharing the Diameter port (PostgreSQL only); 0 = one per core
    workers: int = 0
    # batches of one process in flight at once: one computes while another waits on the
    # database (PostgreSQL; SQLite has one writer, so always 1)
    batch_workers: int = 2
    answer_retention: float = 3600.0  # seconds every credit-control answer is kept
    sip_max_dialogs: int = 100  # IVR: concurrent calls; more INVITEs get 503 + Retry-After
    sip_max_cps: float = 10.0  # IVR: new calls per second (token bucket)
    # HTTPS for the web UI/API: PEM certificate (chain) and private key; both or neither.
    web_tls_cert: Path | None = None
    web_tls_key: Path | None = None

    @property
    def web_tls(self) -> bool:
        return self.web_tls_cert is not None

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def secret_key_path(self) -> Path:
        return self.data_dir / "secret.key"

    @property
    def ivr_origin_host(self) -> str:
        """The built-in IVR bridge's Diameter identity; the OCS admits it from this machine
        whatever OCS_DIAMETER_PEERS says."""
        return "ivr." + self.diameter_realm


# env var -> (field, parser)
_ENV: dict[str, str] = {
    "OCS_DATA_DIR": "data_dir",
    "OCS_DATABASE_URL": "database_url",
    "OCS_WEB_HOST": "web_host",
    "OCS_WEB_PORT": "web_port",
    "OCS_DIAMETER_HOST": "diameter_host",
    "OCS_DIAMETER_PORT": "diameter_port",
    "OCS_DIAMETER_ORIGIN_HOST": "diameter_origin_host",
    "OCS_DIAMETER_REALM": "diameter_realm",
    "OCS_DIAMETER_PEERS": "diameter_peers",
    "OCS_SIP_HOST": "sip_host",
    "OCS_SIP_PORT": "sip_port",
    "OCS_MQTT_URL": "mqtt_url",
    "OCS_TCC_GRACE": "tcc_grace",
    "OCS_DIAMETER_MAX_MESSAGE": "diameter_max_message",
    "OCS_DIAMETER_PRE_CER_MAX": "diameter_pre_cer_max",
    "OCS_DIAMETER_MAX_CONNECTIONS": "diameter_max_connections",
    "OCS_DIAMETER_MAX_BUFFERED": "diameter_max_buffered",
    "OCS_DIAMETER_TLS_PORT": "diameter_tls_port",
    "OCS_DIAMETER_TLS_CERT": "diameter_tls_cert",
    "OCS_DIAMETER_TLS_KEY": "diameter_tls_key",
    "OCS_DIAMETER_TLS_CA": "diameter_tls_ca",
    "OCS_WORKERS": "workers",
    "OCS_BATCH_WORKERS": "batch_workers",
    "OCS_ANSWER_RETENTION": "answer_retention",
    "OCS_SIP_MAX_DIALOGS": "sip_max_dialogs",
    "OCS_SIP_MAX_CPS": "sip_max_cps",
    "OCS_WEB_TLS_CERT": "web_tls_cert",
    "OCS_WEB_TLS_KEY": "web_tls_key",
}

_INT_FIELDS = {"web_port", "diameter_port", "sip_port", "diameter_tls_port"}
_COUNT_FIELDS = {"diameter_max_message", "diameter_pre_cer_max", "diameter_max_connections",
                 "diameter_max_buffered"}
_PATH_FIELDS = {"diameter_tls_cert", "diameter_tls_key", "diameter_tls_ca"}
_LOOPBACK = {"127.0.0.1", "::1", "localhost"}


def _parse_port(name: str, raw: Any) -> int:
    try:
        port = int(raw)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a port number, got {raw!r}") from None
    if not 0 <= port <= 65535:
        raise ConfigError(f"{name} must be in 0..65535, got {port}")
    return port


def _parse_count(name: str, raw: Any) -> int:
    try:
        value = int(raw)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a whole number, got {raw!r}") from None
    if value < 1:
        raise ConfigError(f"{name} must be at least 1, got {value}")
    return value


def _check_diameter(values: dict[str, Any]) -> None:
    message = values.get("diameter_max_message", _DEFAULT_MAX_MESSAGE)
    if message < 4096 or message > 0xFFFFFC:
        raise ConfigError(f"diameter_max_message must be in 4096..16777212, got {message}")
    if values.get("diameter_pre_cer_max", _DEFAULT_PRE_CER_MAX) > message:
        raise ConfigError("diameter_pre_cer_max cannot be above diameter_max_message")
    if values.get("diameter_tls_port") is not None:
        absent = [n for n in ("diameter_tls_cert", "diameter_tls_key", "diameter_tls_ca")
                  if values.get(n) is None]
        if absent:
            raise ConfigError("Diameter over TLS (diameter_tls_port) needs "
                              + ", ".join(absent) + " (peers are authenticated by certificate)")


def _parse_peers(raw: Any) -> tuple[str, ...]:
    if isinstance(raw, str):
        items = [p.strip() for p in raw.split(",")]
    elif isinstance(raw, list | tuple):
        items = [str(p).strip() for p in raw]
    else:
        raise ConfigError(f"diameter_peers must be a comma-separated list, got {raw!r}")
    return tuple(p for p in items if p)


def _web_tls(values: dict[str, Any]) -> None:
    cert, key = values.get("web_tls_cert"), values.get("web_tls_key")
    if not cert and not key:
        values.pop("web_tls_cert", None)
        values.pop("web_tls_key", None)
        return
    if not cert or not key:
        raise ConfigError("web_tls_cert and web_tls_key must be set together")
    for name, raw in (("web_tls_cert", cert), ("web_tls_key", key)):
        path = Path(str(raw))
        if not path.is_file():
            raise ConfigError(f"{name}: no such file {path}")
        values[name] = path


def load_settings(
    env: Mapping[str, str] | None = None, config_file: str | Path | None = None
) -> Settings:
    """Build Settings from the TOML file (if any) overlaid by environment variables."""
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    path = config_file or env.get("OCS_CONFIG")
    data_dir = Path(env.get("OCS_DATA_DIR", "./var"))
    if path is None and (data_dir / "ocs.toml").is_file():
        path = data_dir / "ocs.toml"
    if path is not None:
        try:
            with open(path, "rb") as fh:
                values.update(tomllib.load(fh))
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {path}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path}: {exc}") from None
    known = {f.name for f in fields(Settings)}
    unknown = set(values) - known
    if unknown:
        raise ConfigError(f"unknown setting(s) in {path}: {', '.join(sorted(unknown))}")
    for var, name in _ENV.items():
        if var in env and env[var] != "":
            values[name] = env[var]
        elif var == "OCS_MQTT_URL" and env.get(var) == "":
            values[name] = None

    data_dir = Path(values.get("data_dir", data_dir))
    values["data_dir"] = data_dir
    values.setdefault("database_url", f"sqlite://{data_dir / 'ocs.sqlite3'}")
    for name in _INT_FIELDS & values.keys():
        values[name] = _parse_port(name, values[name])
    for name in _COUNT_FIELDS & values.keys():
        values[name] = _parse_count(name, values[name])
    for name in _PATH_FIELDS & values.keys():
        values[name] = Path(values[name])
    _check_diameter(values)
    for name in ("tcc_grace", "answer_retention"):
        if name in values:
            try:
                values[name] = float(values[name])
            except ValueError:
                raise ConfigError(f"{name} must be a number, got {values[name]!r}") from None
            if values[name] < 0:
                raise ConfigError(f"{name} must not be negative")
    for name, low in (("workers", 0), ("batch_workers", 1)):
        if name in values:
            try:
                values[name] = int(values[name])
            except ValueError:
                raise ConfigError(
                    f"{name} must be a whole number, got {values[name]!r}"
                ) from None
            if not low <= values[name] <= 256:
                raise ConfigError(f"{name} must be in {low}..256")
    for name, kind in (("sip_max_dialogs", int), ("sip_max_cps", float)):
        if name in values:
            try:
                values[name] = kind(values[name])
            except ValueError:
                raise ConfigError(f"{name} must be a number, got {values[name]!r}") from None
            if values[name] <= 0:
                raise ConfigError(f"{name} must be positive, got {values[name]!r}")
    host = str(values.get("diameter_host", "127.0.0.1"))
    if "diameter_peers" in values:
        values["diameter_peers"] = _parse_peers(values["diameter_peers"])
    elif host not in _LOOPBACK:
        # Admitting any peer is only a safe default while nobody else can connect.
        values["diameter_peers"] = ()
    _web_tls(values)
    url = str(values["database_url"])
    if not url.startswith(("sqlite://", "postgres://", "asyncpg://", "psycopg://")):
        raise ConfigError(f"OCS_DATABASE_URL must be a sqlite:// or postgres:// URL, got {url!r}")
    return Settings(**values)
