"""Validation of received messages against the command grammars in `diameter_dicts/`.

Why this exists: the Result-Codes a peer gets for a bad message (5005 + Failed-AVP for a
missing AVP, 5004 for a bad value, 5001 for an unknown M-bit AVP, 3009 for bad AVP flags)
must follow the data files, not ad-hoc checks scattered through the decoders. The data is
compiled once into sets of integer keys so a check costs one pass over the top-level AVPs.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from diameter_dicts import AvpDef, Grammar, load_avps, load_grammars

from .codec import AVP_M, AVP_RESERVED, RawAvp, _i, example_avp, key, raw_avp
from .errors import ProtocolError


@dataclass(frozen=True, slots=True)
class Rules:
    """A compiled grammar: integer keys instead of names."""

    name: str
    code: int
    application: int
    proxiable: bool
    required: tuple[tuple[int, AvpDef], ...]
    one_of: tuple[tuple[tuple[int, AvpDef], ...], ...]
    enums: dict[int, frozenset[int]]


@cache
def known_keys() -> frozenset[int]:
    """AVP keys this server recognises: our dictionary plus python-diameter's."""
    keys = {key(d.code, d.vendor) for d in load_avps().values()}
    try:
        from diameter.message.avp.dictionary import AVP_DICTIONARY, AVP_VENDOR_DICTIONARY

        keys.update(AVP_DICTIONARY)
        for vendor, table in AVP_VENDOR_DICTIONARY.items():
            keys.update(key(code, vendor) for code in table)
    except ImportError:  # pragma: no cover - python-diameter is a dependency
        pass
    return frozenset(keys)


def _compile(g: Grammar) -> Rules:
    avps = load_avps()

    def kd(name: str) -> tuple[int, AvpDef]:
        d = avps[name]
        return key(d.code, d.vendor), d

    enums: dict[int, frozenset[int]] = {}
    for name in g.allowed:
        d = avps[name]
        if d.values is not None:
            enums[key(d.code, d.vendor)] = d.values
    return Rules(
        name=g.name,
        code=g.code,
        application=g.application,
        proxiable=g.proxiable,
        required=tuple(kd(n) for n in (*g.fixed, *g.required)),
        one_of=tuple(tuple(kd(n) for n in group) for group in g.required_one_of),
        enums=enums,
    )


@cache
def rules(name: str) -> Rules:
    """Compiled rules of one command grammar (CCR, CER, RAA ...)."""
    return _compile(load_grammars()[name])


def validate(r: Rules, buf: bytes, avps: list[RawAvp]) -> None:
    """Raise ProtocolError for the first grammar violation of a message's top-level AVPs."""
    known = known_keys()
    enums = r.enums
    seen = set()
    for a in avps:
        k, flags = a[0], a[1]
        if flags & AVP_RESERVED:
            raise ProtocolError(3009, f"AVP {k & 0xFFFFFFFF}: reserved flag bits set",
                                raw_avp(buf, a))
        if k not in known and flags & AVP_M:
            raise ProtocolError(5001, f"AVP {k & 0xFFFFFFFF} (vendor {k >> 32}) not supported",
                                raw_avp(buf, a))
        seen.add(k)
        allowed = enums.get(k)
        if allowed is not None:
            if a[3] - a[2] != 4:
                raise ProtocolError(5014, "Enumerated value must be 4 bytes", raw_avp(buf, a))
            if _i.unpack_from(buf, a[2])[0] not in allowed:
                raise ProtocolError(5004, f"AVP {k & 0xFFFFFFFF}: value not allowed",
                                    raw_avp(buf, a))
    for k, d in r.required:
        if k not in seen:
            raise ProtocolError(5005, f"missing AVP {d.name}", example_avp(d.code, d.vendor))
    for group in r.one_of:
        if not any(k in seen for k, _ in group):
            d = group[0][1]
            raise ProtocolError(5005, f"missing AVP {d.name}", example_avp(d.code, d.vendor))
