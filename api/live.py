"""Live calls for Supervision and the sessions API: open CreditSession rows + balances."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from tortoise import connections

from ocs.models import CreditSession, SessionState


@dataclass(frozen=True, slots=True)
class LiveCall:
    session_id: str
    calling: str
    called: str
    status: str
    account: str  # account number ("" when the session has no account)
    account_name: str
    balance: int
    reserved: int
    rate: int  # units/second in force
    tariff_prefix: str
    started_at: datetime
    used_seconds: int
    cost: int  # units the call has used so far (charged to the balance only at its end)
    peer: str
    # What the account's *other* live calls had consumed when this row was read: a call's
    # CALL entry is written at its end, so every live call of the account spends the same
    # balance. Subtracted so that two calls on one account do not both show it whole.
    others: int = 0

    def elapsed(self, now: datetime | None = None) -> int:
        now = now or datetime.now(UTC)
        return max(0, int((now - self.started_at).total_seconds()))

    def consumption(self, now: datetime | None = None) -> int:
        """Units the call has consumed so far: its reported usage, or elapsed × rate if
        that is more."""
        return max(self.cost, self.elapsed(now) * self.rate)

    def credit(self, now: datetime | None = None) -> int:
        """Credit left to the account now: its balance (not yet charged for any live call:
        the CALL entry is written when the call ends) less what this call and the account's
        other live calls have consumed."""
        return self.balance - self.consumption(now) - self.others

    def as_json(self, now: datetime | None = None) -> dict[str, Any]:
        now = now or datetime.now(UTC)
        return {
            "session_id": self.session_id,
            "calling": self.calling,
            "called": self.called,
            "status": self.status,
            "account": self.account or None,
            "balance": self.balance,
            "reserved": self.reserved,
            "credit": self.credit(now),
            "rate": self.rate,
            "tariff_prefix": self.tariff_prefix,
            "started_at": self.started_at.isoformat(),
            "duration": self.elapsed(now),
            "used_seconds": self.used_seconds,
            "cost": self.cost,
            "consumption": self.consumption(now),
            "peer": self.peer,
        }


async def live_calls(limit: int = 1000) -> list[LiveCall]:
    rows = (
        await CreditSession.filter(state=SessionState.OPEN)
        .prefetch_related("account")
        .order_by("started_at")
        .limit(limit)
    )
    calls: list[LiveCall] = []
    for row in rows:
        account = row.account
        started = row.started_at
        if started.tzinfo is None:
            started = started.replace(tzinfo=UTC)
        calls.append(
            LiveCall(
                session_id=row.session_id,
                calling=row.calling,
                called=row.called,
                status="Connected" if row.used_seconds or row.cost or row.rate else "Setup",
                account=account.number if account else "",
                account_name=account.name if account else "",
                balance=account.balance if account else 0,
                reserved=account.reserved if account else 0,
                rate=row.rate,
                tariff_prefix=row.tariff_prefix,
                started_at=started,
                used_seconds=row.used_seconds,
                cost=row.cost,
                peer=row.peer,
            )
        )
    return _with_others(calls, datetime.now(UTC))


async def live_fingerprint() -> tuple[Any, ...]:
    """Changes whenever a call starts, moves on (a CCR-U) or ends, in any OCS process on the
    database: Supervision polls it, since other processes' events never reach this one's
    bus. Closed sessions have no expiry, so the expiry index keeps this to open rows."""
    conn = connections.get("default")
    _, rows = await conn.execute_query(
        "SELECT COUNT(*), MAX(updated_at), COALESCE(SUM(last_request_number), 0)"
        " FROM credit_session WHERE expires_at IS NOT NULL AND state = 'open'"
    )
    row = rows[0]
    return tuple(row.values()) if isinstance(row, dict) else tuple(row)


def _with_others(calls: list[LiveCall], now: datetime) -> list[LiveCall]:
    from dataclasses import replace

    totals: dict[str, int] = {}
    for call in calls:
        if call.account:
            totals[call.account] = totals.get(call.account, 0) + call.consumption(now)
    return [
        replace(c, others=totals[c.account] - c.consumption(now)) if c.account else c
        for c in calls
    ]
