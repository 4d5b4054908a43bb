"""Operator parameters (the brochure's Config page), stored in the `setting` table.

Each parameter has a default (the brochure's), a parser that validates operator input,
and is stored as JSON. `OperatorSettings` is the typed, immutable view the rest of the code
reads; `save_operator_settings` validates everything before writing anything.
"""

from __future__ import annotations

import dataclasses
import zoneinfo
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from tortoise.transactions import in_transaction

from ocs.models import Setting
from ocs.numbers import NumberError, is_ascii_digits, parse_int


class SettingsError(ValueError):
    """An operator parameter failed validation; `field` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


LANGUAGES = ("FR", "EN")
BILLING_SCHEDULES = ("none", "daily", "weekly", "monthly")
IVR_WARNING_MODES = ("tone", "prompt", "both")


@dataclass(frozen=True, slots=True)
class OperatorSettings:
    default_language: str = "FR"
    ivr_access_number: str = "6000"
    switch_address: str = "127.0.0.1"
    switch_port: int = 15749
    switch_timeout: int = 2
    timezone: str = "Europe/Paris"
    default_calling_address: str = ""
    default_calling_forced: bool = False
    service_log: bool = True
    csv_separator: str = ":"
    currency: str = "Euros"
    currency_code: int = 978  # ISO 4217 numeric, sent in Diameter Cost-Information
    unit_price: Decimal = Decimal("0.0001")
    default_initial_block: int = 1  # seconds, for new tariffs
    default_increment: int = 1
    default_grant: int = 60  # CC-Time granted when the client asks for no amount
    max_grant: int = 3600
    validity_time: int = 600  # Validity-Time sent with every grant (>= CC-Time)
    low_credit_threshold: int = 10000  # units; below it a low-credit event is raised
    billing_schedule: str = "none"
    # IVR (issue 11): caller-ID access on the access number, language menu, warned cut,
    # ring timeout, PIN lockout (per caller ID and global), another call after hang-up.
    ivr_one_step_access: bool = True  # a registered caller ID skips the PIN on the access number
    ivr_caller_pin_required: bool = False  # ... but ask it anyway (anti-spoofing, all accounts)
    ivr_language_menu: bool = False
    ivr_warning_seconds: int = 30  # warn before the credit cut (0: no warning)
    ivr_warning_mode: str = "both"  # tone, prompt or both
    ivr_no_answer_timeout: int = 60  # seconds the destination may ring
    ivr_another_call: bool = True
    ivr_lockout_failures: int = 6  # failed PINs per caller ID within the window...
    ivr_lockout_window: int = 900  # ... seconds ...
    ivr_lockout_duration: int = 900  # ... lock the caller ID out this long
    ivr_global_failures_per_minute: int = 30  # all callers together

    @property
    def tz(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.timezone)

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            out[f.name] = str(value) if isinstance(value, Decimal) else value
        return out


def _text(max_len: int, allow_empty: bool = True) -> Callable[[str, Any], str]:
    def parse(name: str, raw: Any) -> str:
        value = str(raw).strip()
        if not value and not allow_empty:
            raise SettingsError(name, "must not be empty")
        if len(value) > max_len:
            raise SettingsError(name, f"at most {max_len} characters")
        return value

    return parse


def _int(lo: int, hi: int) -> Callable[[str, Any], int]:
    def parse(name: str, raw: Any) -> int:
        if isinstance(raw, bool):
            raise SettingsError(name, "must be a whole number")
        try:
            value = parse_int(raw if isinstance(raw, int) else str(raw))
        except NumberError:
            raise SettingsError(name, f"must be a whole number, got {raw!r}") from None
        if not lo <= value <= hi:
            raise SettingsError(name, f"must be between {lo} and {hi}")
        return value

    return parse


def _bool(name: str, raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in {"1", "true", "on", "yes"}:
        return True
    if text in {"0", "false", "off", "no", ""}:
        return False
    raise SettingsError(name, f"must be true or false, got {raw!r}")


def _digits(name: str, raw: Any) -> str:
    value = str(raw).strip()
    if not is_ascii_digits(value) or len(value) > 32:  # "²" is isdigit(), not dialable
        raise SettingsError(name, "must be digits only (at most 32)")
    return value


def _language(name: str, raw: Any) -> str:
    value = str(raw).strip().upper()
    if value not in LANGUAGES:
        raise SettingsError(name, f"must be one of {', '.join(LANGUAGES)}")
    return value


def _timezone(name: str, raw: Any) -> str:
    value = str(raw).strip()
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise SettingsError(name, f"unknown time zone {value!r}") from None
    return value


def _separator(name: str, raw: Any) -> str:
    value = str(raw)
    if value == "\\t":
        value = "\t"
    if len(value) != 1 or value in '\r\n"' or value.isalnum():
        raise SettingsError(name, "must be a single punctuation character (e.g. : ; , or tab)")
    return value


def _unit_price(name: str, raw: Any) -> Decimal:
    text = str(raw).strip().replace(",", ".")
    if not text.isascii():  # Decimal() accepts any Unicode digit ("٠٫١")
        raise SettingsError(name, f"must be a decimal number, got {raw!r}")
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise SettingsError(name, f"must be a decimal number, got {raw!r}") from None
    if not value.is_finite() or value <= 0:
        raise SettingsError(name, "must be a positive number")
    if value.as_tuple().exponent < -9:  # type: ignore[operator]
        raise SettingsError(name, "at most 9 decimal places")
    return value


def _address(name: str, raw: Any) -> str:
    value = str(raw).strip()
    if not value:
        return ""
    host, sep, port = value.rpartition(":")
    if sep and (not host or not is_ascii_digits(port) or len(port) > 5
                or not 0 < int(port) < 65536):
        raise SettingsError(name, "must be host or host:port")
    if any(c.isspace() for c in value):
        raise SettingsError(name, "must not contain spaces")
    return value


def _warning_mode(name: str, raw: Any) -> str:
    value = str(raw).strip().lower()
    if value not in IVR_WARNING_MODES:
        raise SettingsError(name, f"must be one of {', '.join(IVR_WARNING_MODES)}")
    return value


def _schedule(name: str, raw: Any) -> str:
    value = str(raw).strip().lower()
    if value not in BILLING_SCHEDULES:
        raise SettingsError(name, f"must be one of {', '.join(BILLING_SCHEDULES)}")
    return value


PARSERS: dict[str, Callable[[str, Any], Any]] = {
    "default_language": _language,
    "ivr_access_number": _digits,
    "switch_address": _text(255, allow_empty=False),
    "switch_port": _int(1, 65535),
    "switch_timeout": _int(1, 300),
    "timezone": _timezone,
    "default_calling_address": _address,
    "default_calling_forced": _bool,
    "service_log": _bool,
    "csv_separator": _separator,
    "currency": _text(32, allow_empty=False),
    "currency_code": _int(1, 999),
    "unit_price": _unit_price,
    "default_initial_block": _int(1, 3600),
    "default_increment": _int(1, 3600),
    "default_grant": _int(1, 86400),
    "max_grant": _int(1, 86400),
    "validity_time": _int(1, 86400),
    "low_credit_threshold": _int(0, 10**15),
    "billing_schedule": _schedule,
    "ivr_one_step_access": _bool,
    "ivr_caller_pin_required": _bool,
    "ivr_language_menu": _bool,
    "ivr_warning_seconds": _int(0, 3600),
    "ivr_warning_mode": _warning_mode,
    "ivr_no_answer_timeout": _int(5, 600),
    "ivr_another_call": _bool,
    "ivr_lockout_failures": _int(1, 1000),
    "ivr_lockout_window": _int(10, 86400),
    "ivr_lockout_duration": _int(10, 7 * 86400),
    "ivr_global_failures_per_minute": _int(1, 1_000_000),
}


def parse_settings(values: Mapping[str, Any], base: OperatorSettings) -> OperatorSettings:
    """Validate a partial update on top of `base`. Raises SettingsError on the first bad field."""
    unknown = set(values) - set(PARSERS)
    if unknown:
        name = sorted(unknown)[0]
        raise SettingsError(name, "unknown parameter")
    parsed = {name: PARSERS[name](name, raw) for name, raw in values.items()}
    result = dataclasses.replace(base, **parsed)
    if result.validity_time < result.default_grant:
        raise SettingsError("validity_time", "must be at least the default grant")
    if result.max_grant < result.default_grant:
        raise SettingsError("max_grant", "must be at least the default grant")
    return result


def _unwrap(value: Any) -> Any:
    # Values are stored as {"v": value}: Tortoise's JSONField would parse a bare string as
    # JSON text on the way in.
    return value["v"] if isinstance(value, dict) and "v" in value else value


async def load_operator_settings() -> OperatorSettings:
    rows = await Setting.filter(key__in=list(PARSERS))
    stored = {row.key: _unwrap(row.value) for row in rows}
    try:
        return parse_settings(stored, OperatorSettings())
    except SettingsError:
        # A value written by an older version that no longer validates: fall back field by
        # field rather than refusing to start.
        base = OperatorSettings()
        for key, value in stored.items():
            try:
                base = parse_settings({key: value}, base)
            except SettingsError:
                continue
        return base


async def save_operator_settings(values: Mapping[str, Any]) -> OperatorSettings:
    """Validate all of `values`, then store them in one transaction."""
    current = await load_operator_settings()
    updated = parse_settings(values, current)
    stored = updated.as_json()
    async with in_transaction():
        for key in values:
            await Setting.update_or_create(key=key, defaults={"value": {"v": stored[key]}})
    return updated
