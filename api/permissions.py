"""Which role a request needs (pure: method, path and the handler's opt in, role out).

Order of decision:

1. a handler's ``opt={"role": "admin" | "operator" | "readonly"}`` says it explicitly;
2. else the first matching row of ``RULES`` (method set, path pattern);
3. else reading (GET/HEAD/OPTIONS) needs ``readonly`` and changing needs ``operator``.

So a new page or REST route is, by default, readable by everyone logged in and writable by
operators; configuration-like routes are listed in ``RULES`` (or set ``opt``) for admins.
The same matrix applies to browser sessions (the operator's role) and API keys (the key's
role). docs/API.md shows it as a table.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from ocs.models import OperatorRole

READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
ANY = frozenset({"GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH", "DELETE"})
WRITE = ANY - READ_METHODS

ADMIN, OPERATOR, READONLY = OperatorRole.ADMIN, OperatorRole.OPERATOR, OperatorRole.READONLY

# (methods, path pattern, role); first match wins.
RULES: tuple[tuple[frozenset[str], re.Pattern[str], OperatorRole], ...] = tuple(
    (methods, re.compile(pattern), role)
    for methods, pattern, role in (
        (ANY, r"^/operators(/|$)", ADMIN),
        (ANY, r"^/apikeys(/|$)", ADMIN),
        (ANY, r"^/api/v1/operators(/|$)", ADMIN),
        (ANY, r"^/api/v1/apikeys(/|$)", ADMIN),
        (WRITE, r"^/config(/|$)", ADMIN),
        (WRITE, r"^/costs(/|$)", ADMIN),
        (WRITE, r"^/api/v1/tariffs(/|$)", ADMIN),
        (WRITE, r"^/api/v1/settings(/|$)", ADMIN),
        # Bulk money out of nothing: voucher batches (generate, void), calling-card batches
        # (accounts with initial credit), accounts CSV import (opening balances).
        (WRITE, r"^/vouchers/batches(/|$)", ADMIN),
        (WRITE, r"^/api/v1/voucher-batches(/|$)", ADMIN),
        (WRITE, r"^/cards(/|$)", ADMIN),
        (WRITE, r"^/api/v1/card-batches(/|$)", ADMIN),
        (WRITE, r"^/users/import(/|$)", ADMIN),
        (WRITE, r"^/api/v1/accounts/csv(/|$)", ADMIN),
    )
)


def required_role(method: str, path: str, opt: Mapping[str, Any] | None = None) -> OperatorRole:
    explicit = (opt or {}).get("role")
    if explicit:
        return OperatorRole(str(explicit))
    method = method.upper()
    for methods, pattern, role in RULES:
        if method in methods and pattern.search(path):
            return role
    return READONLY if method in READ_METHODS else OPERATOR


_RANK = {READONLY: 0, OPERATOR: 1, ADMIN: 2}


def allows(role: OperatorRole | str, needed: OperatorRole | str) -> bool:
    return _RANK[OperatorRole(role)] >= _RANK[OperatorRole(needed)]
