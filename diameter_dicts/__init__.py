"""Loader for the Diameter dictionaries kept as data (`commands.toml`, `avps.toml`).

Why this exists: the rules the server enforces (which AVPs a CCR must carry, which AVP
codes it knows, which carry the M-bit) are data an operator or reviewer can read without
reading Python. This module only parses and cross-checks the files; the Diameter layer
(`ocs.diameter`) turns them into fast lookup tables.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

__all__ = [
    "AVP_TYPES",
    "DEFAULT_MAX_AVPS",
    "DEFAULT_MAX_REPEAT",
    "AvpDef",
    "DictionaryError",
    "Grammar",
    "avp_by_code",
    "load_avps",
    "load_grammars",
    "load_group_grammars",
]

_DIR = Path(__file__).resolve().parent

DEFAULT_MAX_AVPS = 128
DEFAULT_MAX_REPEAT = 16

AVP_TYPES = frozenset(
    {
        "OctetString",
        "UTF8String",
        "DiameterIdentity",
        "DiameterURI",
        "Address",
        "Time",
        "Unsigned32",
        "Unsigned64",
        "Integer32",
        "Integer64",
        "Enumerated",
        "Grouped",
        "IPFilterRule",
    }
)


class DictionaryError(ValueError):
    """A dictionary file is malformed or refers to an AVP it does not define."""


@dataclass(frozen=True, slots=True)
class AvpDef:
    name: str
    code: int
    vendor: int
    type: str
    mandatory: bool
    values: frozenset[int] | None = None  # allowed Enumerated values, when restricted

    @property
    def key(self) -> tuple[int, int]:
        return (self.code, self.vendor)


@dataclass(frozen=True, slots=True)
class Grammar:
    """The ABNF of one command (or one grouped AVP) as sets of AVP names."""

    name: str
    code: int
    request: bool
    application: int
    proxiable: bool
    fixed: tuple[str, ...]
    required: tuple[str, ...]
    required_one_of: tuple[tuple[str, ...], ...]
    optional: tuple[str, ...]
    repeated: frozenset[str]
    any_avp: bool
    note: str = ""
    max_avps: int = 128  # AVPs accepted at this level
    max_repeat: tuple[tuple[str, int], ...] = ()  # bounds of repeated AVPs (others: 16)

    def max_occurs(self, name: str) -> int | None:
        """How often an AVP of this grammar may occur (None: not in the grammar, *[AVP])."""
        if name in self.repeated:
            return dict(self.max_repeat).get(name, DEFAULT_MAX_REPEAT)
        return 1 if name in self.allowed else None

    @property
    def allowed(self) -> frozenset[str]:
        return frozenset(self.fixed) | frozenset(self.required) | frozenset(self.optional)


def _read(name: str) -> dict[str, Any]:
    with (_DIR / name).open("rb") as fh:
        return tomllib.load(fh)


@cache
def load_avps() -> dict[str, AvpDef]:
    """All AVP definitions by name."""
    out: dict[str, AvpDef] = {}
    seen: dict[tuple[int, int], str] = {}
    for name, raw in _read("avps.toml").items():
        try:
            typ = str(raw["type"])
            code = int(raw["code"])
            vendor = int(raw.get("vendor", 0))
            mandatory = bool(raw["m"])
        except (KeyError, TypeError, ValueError) as exc:
            raise DictionaryError(f"AVP {name}: {exc}") from None
        if typ not in AVP_TYPES:
            raise DictionaryError(f"AVP {name}: unknown type {typ}")
        if (code, vendor) in seen:
            raise DictionaryError(f"AVP {name}: code {code}/{vendor} already {seen[code, vendor]}")
        seen[code, vendor] = name
        values = raw.get("values")
        out[name] = AvpDef(
            name=name,
            code=code,
            vendor=vendor,
            type=typ,
            mandatory=mandatory,
            values=frozenset(int(v) for v in values) if values is not None else None,
        )
    return out


@cache
def avp_by_code() -> dict[tuple[int, int], AvpDef]:
    """All AVP definitions keyed by (code, vendor)."""
    return {d.key: d for d in load_avps().values()}


def _grammar(name: str, raw: dict[str, Any], avps: dict[str, AvpDef]) -> Grammar:
    g = Grammar(
        name=name,
        code=int(raw.get("code", 0)),
        request=bool(raw.get("request", False)),
        application=int(raw.get("application", 0)),
        proxiable=bool(raw.get("proxiable", False)),
        fixed=tuple(raw.get("fixed", ())),
        required=tuple(raw.get("required", ())),
        required_one_of=tuple(tuple(x) for x in raw.get("required_one_of", ())),
        optional=tuple(raw.get("optional", ())),
        repeated=frozenset(raw.get("repeated", ())),
        any_avp=bool(raw.get("any_avp", False)),
        note=str(raw.get("note", "")),
        max_avps=int(raw.get("max_avps", DEFAULT_MAX_AVPS)),
        max_repeat=tuple((str(k), int(v)) for k, v in raw.get("max_repeat", {}).items()),
    )
    names = set(g.allowed) | set(g.repeated)
    for group in g.required_one_of:
        names.update(group)
    missing = sorted(n for n in names if n not in avps)
    if missing:
        raise DictionaryError(f"grammar {name} refers to undefined AVPs: {missing}")
    for avp_name, count in g.max_repeat:
        if avp_name not in g.repeated:
            raise DictionaryError(f"grammar {name}: max_repeat of {avp_name}, not a repeated AVP")
        if count < 1:
            raise DictionaryError(f"grammar {name}: max_repeat of {avp_name} must be >= 1")
    if g.max_avps < 1:
        raise DictionaryError(f"grammar {name}: max_avps must be >= 1")
    return g


@cache
def load_grammars() -> dict[str, Grammar]:
    """Command grammars by short name (CCR, CCA, RAR, ...)."""
    avps = load_avps()
    raw = _read("commands.toml")
    return {n: _grammar(n, v, avps) for n, v in raw.items() if n != "groups"}


@cache
def load_group_grammars() -> dict[str, Grammar]:
    """Grammars of the grouped AVPs the server reads or writes, by AVP name."""
    avps = load_avps()
    raw = _read("commands.toml").get("groups", {})
    out = {n: _grammar(n, v, avps) for n, v in raw.items()}
    for n in out:
        if avps[n].type != "Grouped":
            raise DictionaryError(f"group grammar {n}: AVP is not Grouped")
    return out
