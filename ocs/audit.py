"""The audit log: who changed what, and when.

One call records an entry, from any part of the product::

    await audit.record(actor, action, target="", details=None, address="")

* ``actor``: who. An operator's name (``alice``), ``api:<key name>`` for a REST call,
  ``cli:<unix user>`` for a shell command, ``ocs`` for the server itself.
  (`api.auth.actor(request)` gives it for a web request.)
* ``action``: what, as ``<object>.<verb>``: ``config.update``, ``tariff.create``,
  ``account.update``, ``credit.add``, ``session.kill``, ``operator.role`` … (the list in
  docs/ARCHITECTURE.md; new features add theirs the same way).
* ``target``: which object, as the operator would name it: ``account 1001``,
  ``tariff 38``, ``operator alice``, ``api key 1a2b3c4d``.
* ``details``: a small JSON object of what changed (field names, amounts, new values). Never
  secrets: a PIN or password is recorded as ``"pin": "changed"``.
* ``address``: the client's address, when there is one.

Entries are written after the change they describe has been committed (the ledger and the
ORM may use different connections); a crash between the two loses the entry, never the
change. Entries are never updated or deleted by the product.
"""

from __future__ import annotations

import getpass
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ocs.models import AuditEntry

MAX_PAGE = 500


def cli_actor() -> str:
    """The actor of a shell command: ``cli:<unix user>``."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (containers)
        user = str(os.getuid())
    return f"cli:{user}"[:64]


def _clip(text: str, size: int) -> str:
    return str(text)[:size]


async def record(
    actor: str,
    action: str,
    target: str = "",
    details: Mapping[str, Any] | None = None,
    *,
    address: str = "",
) -> AuditEntry:
    """Append one entry to the audit log and return it."""
    return await AuditEntry.create(
        at=datetime.now(UTC),
        actor=_clip(actor or "unknown", 64),
        action=_clip(action, 64),
        target=_clip(target, 255),
        details=dict(details) if details else None,
        address=_clip(address, 64),
    )


@dataclass(frozen=True, slots=True)
class AuditFilter:
    actor: str = ""  # exact operator/key name
    action: str = ""  # exact action, or a prefix ending in "." ("credit.")
    target: str = ""  # substring
    since: datetime | None = None
    until: datetime | None = None


@dataclass(frozen=True, slots=True)
class AuditPage:
    items: list[AuditEntry]
    limit: int
    older: int | None  # pass as `before` for the next (older) page
    newer: int | None  # pass as `after` for the previous (newer) page


async def query(
    flt: AuditFilter, *, limit: int = 50, before: int | None = None, after: int | None = None
) -> AuditPage:
    """Entries newest first, keyset-paged by id."""
    limit = max(1, min(int(limit), MAX_PAGE))
    q = AuditEntry.all()
    if flt.actor:
        q = q.filter(actor=flt.actor)
    if flt.action:
        q = (q.filter(action__startswith=flt.action) if flt.action.endswith(".")
             else q.filter(action=flt.action))
    if flt.target:
        q = q.filter(target__icontains=flt.target)
    if flt.since is not None:
        q = q.filter(at__gte=flt.since)
    if flt.until is not None:
        q = q.filter(at__lt=flt.until)
    if after is not None:
        rows = list(reversed(await q.filter(id__gt=after).order_by("id").limit(limit + 1)))
        more_newer = len(rows) > limit
        rows = rows[-limit:] if more_newer else rows
        newer = rows[0].id if rows and more_newer else None
        older = rows[-1].id if rows and await q.filter(id__lt=rows[-1].id).exists() else None
        return AuditPage(rows, limit, older, newer)
    q_page = q.filter(id__lt=before) if before is not None else q
    rows = list(await q_page.order_by("-id").limit(limit + 1))
    older = rows[limit - 1].id if len(rows) > limit else None
    rows = rows[:limit]
    newer = rows[0].id if rows and before is not None and await q.filter(
        id__gt=rows[0].id).exists() else None
    return AuditPage(rows, limit, older, newer)


async def actors() -> list[str]:
    """Every actor that appears in the log (for the filter list)."""
    rows = await AuditEntry.all().distinct().values_list("actor", flat=True)
    return sorted({str(r) for r in rows})


async def actions() -> list[str]:
    rows = await AuditEntry.all().distinct().values_list("action", flat=True)
    return sorted({str(r) for r in rows})
