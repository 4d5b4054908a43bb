"""Live calls for Supervision and the sessions API: open CreditSession rows + balances."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

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
    cost: int  # units already debited for this call
    peer: str

    def elapsed(self, now: datetime | None = None) -> int:
        now = now or datetime.now(UTC)
        return max(0, int((now - self.started_at).total_seconds()))

    def consumption(self, now: datetime | None = None) -> int:
        """Units the call has consumed so far: debited, or elapsed × rate if that is more."""
        return max(self.cost, self.elapsed(now) * self.rate)

    def credit(self, now: datetime | None = None) -> int:
        """The balance once what the call consumed beyond its debits is taken."""
        return self.balance - (self.consumption(now) - self.cost)

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
    return calls
