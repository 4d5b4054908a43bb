"""Validation of received messages against the command grammars in `diameter_dicts/`.

Why this exists: the Result-Codes a peer gets for a bad message (5005 + Failed-AVP for a
missing AVP, 5004 for a bad value, 5001 for an unknown M-bit AVP, 3009 for bad AVP flags,
5009 for an AVP that occurs too often or too many AVPs) must follow the data files, not
ad-hoc checks scattered through the decoders. The data is compiled once into integer keys so
a check costs one pass over the AVPs of one level, with a bounded count of each.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from diameter_dicts import AvpDef, Grammar, load_avps, load_grammars, load_group_grammars

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
    max_occurs: dict[int, int]  # AVP key -> most occurrences (grammar AVPs only)
    max_avps: int

    def limit(self, k: int) -> int:
        """Most occurrences of the AVP with key `k` (unbounded ones: `max_avps`)."""
        return self.max_occurs.get(k, self.max_avps)


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
    max_occurs: dict[int, int] = {}
    for name in g.allowed | g.repeated:
        d = avps[name]
        if d.values is not None:
            enums[key(d.code, d.vendor)] = d.values
        n = g.max_occurs(name)
        if n is not None:
            max_occurs[key(d.code, d.vendor)] = n
    return Rules(
        name=g.name,
        code=g.code,
        application=g.application,
        proxiable=g.proxiable,
        required=tuple(kd(n) for n in (*g.fixed, *g.required)),
        one_of=tuple(tuple(kd(n) for n in group) for group in g.required_one_of),
        enums=enums,
        max_occurs=max_occurs,
        max_avps=g.max_avps,
    )


@cache
def rules(name: str) -> Rules:
    """Compiled rules of one command grammar (CCR, CER, RAA ...)."""
    return _compile(load_grammars()[name])


@cache
def group_rules(name: str) -> Rules:
    """Compiled rules of one grouped AVP the server reads (Multiple-Services-Credit-Control ...)."""
    return _compile(load_group_grammars()[name])


AVP_OCCURS_TOO_MANY_TIMES = 5009


def too_many(buf: bytes, a: RawAvp, what: str) -> ProtocolError:
    """5009 with the first AVP over the bound in Failed-AVP (RFC 6733 7.1.5)."""
    return ProtocolError(AVP_OCCURS_TOO_MANY_TIMES, what, raw_avp(buf, a))


def check_counts(r: Rules, buf: bytes, avps: list[RawAvp]) -> None:
    """Raise 5009 when one level holds more AVPs than `r` allows, in total or of one kind."""
    if len(avps) > r.max_avps:
        raise too_many(buf, avps[r.max_avps], f"more than {r.max_avps} AVPs in {r.name}")
    if len({a[0] for a in avps}) == len(avps):
        return  # no AVP occurs twice: every bound (>= 1) holds
    limits = r.max_occurs
    counts: dict[int, int] = {}
    first: dict[int, RawAvp] = {}
    for a in avps:
        k = a[0]
        lim = limits.get(k)
        if lim is not None:
            n = counts.get(k, 0) + 1
            counts[k] = n
            if n == 1:
                first[k] = a
            elif n > lim and not _same_copy(buf, lim, first[k], a):
                raise _occurs(buf, a, lim, r.name)


def _same_copy(buf: bytes, lim: int, first: RawAvp, a: RawAvp) -> bool:
    """A second, byte-identical copy of an AVP allowed once is tolerated: Kamailio 5.6's cdp
    puts Origin-Host and Origin-Realm twice in every CCR. A different value is still 5009,
    and the copies still count against the level's `max_avps`."""
    return lim == 1 and buf[first[4] : first[3]] == buf[a[4] : a[3]]


def _occurs(buf: bytes, a: RawAvp, lim: int, name: str) -> ProtocolError:
    return too_many(buf, a, f"AVP {a[0] & 0xFFFFFFFF} occurs more than {lim} "
                            f"time{'s' if lim > 1 else ''} in {name}")


def validate(r: Rules, buf: bytes, avps: list[RawAvp]) -> None:
    """Raise ProtocolError for the first grammar violation of a message's top-level AVPs."""
    known = known_keys()
    enums = r.enums
    limits = r.max_occurs
    if len(avps) > r.max_avps:
        raise too_many(buf, avps[r.max_avps], f"more than {r.max_avps} AVPs in {r.name}")
    seen: dict[int, int] = {}
    first: dict[int, RawAvp] = {}
    for a in avps:
        k, flags = a[0], a[1]
        if flags & AVP_RESERVED:
            raise ProtocolError(3009, f"AVP {k & 0xFFFFFFFF}: reserved flag bits set",
                                raw_avp(buf, a))
        if k not in known and flags & AVP_M:
            raise ProtocolError(5001, f"AVP {k & 0xFFFFFFFF} (vendor {k >> 32}) not supported",
                                raw_avp(buf, a))
        n = seen.get(k, 0) + 1
        seen[k] = n
        if n == 1:
            first[k] = a
        else:
            lim = limits.get(k)
            if lim is not None and n > lim and not _same_copy(buf, lim, first[k], a):
                raise _occurs(buf, a, lim, r.name)
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
