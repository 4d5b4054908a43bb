"""The money invariants over the whole database, as plain SQL on the tables.

Where `ocs.ledger.check_invariants` looks at one account's balance, this looks at every
account and ties the ledger to the sessions and CDRs that explain it:

  M1  account.balance == sum of its ledger entries
  M2  account.reserved >= 0
  M3  account.reserved <= account.balance            (available never negative)
  M4  a CDR's cost == minus the sum of the CALL entries of its session (ledger_entry.reference
      is the Session-Id), and one session has at most one CDR
  M5  every CALL entry is explained: by the CDR of its session, or as a credit-control
      event's debit (reference `event:<Session-Id>`, see ocs.charging.one_time)
  M6  account.reserved == sum of the reservations of its open credit sessions
      (nothing stays reserved once its sessions are closed)
  M7  a closed session holds no reservation

M1-M3 are the ledger's own promises; M4-M7 hold for money that moves through the charging
engine (a test that drives `ocs.ledger` directly, below the session layer, checks only
M1-M3: `money_violations(sessions=False)`). Together M1, M4 and M5 give the global sums:
sum(balances) == sum(entries) and sum(CDR cost) == -sum(CALL entries of calls).

Written as a ledger operation (a generator of SQL statements, see ocs.ledger), so the same
check runs on SQLite and PostgreSQL, in one transaction (a consistent snapshot).
"""

from __future__ import annotations

from dataclasses import dataclass

from ocs.ledger import LedgerStore, Op


@dataclass(frozen=True, slots=True)
class Violation:
    rule: str  # "M1".."M7"
    subject: str  # what is wrong: "account 1001", "cdr 7 (session s1)", "ledger_entry 12"
    detail: str

    def __str__(self) -> str:
        return f"{self.rule} {self.subject}: {self.detail}"


_M1 = (
    "SELECT a.id, a.number, a.balance, COALESCE(SUM(e.amount), 0) FROM account a"
    " LEFT JOIN ledger_entry e ON e.account_id = a.id"
    " GROUP BY a.id, a.number, a.balance HAVING a.balance <> COALESCE(SUM(e.amount), 0)"
    " ORDER BY a.id"
)
_M2_M3 = (
    "SELECT id, number, balance, reserved FROM account"
    " WHERE reserved < 0 OR reserved > balance ORDER BY id"
)
_M4_COST = (
    "SELECT c.id, c.session_id, c.cost, COALESCE(SUM(e.amount), 0) FROM cdr c"
    " LEFT JOIN ledger_entry e ON e.kind = 'CALL' AND e.reference = c.session_id"
    " AND e.account_id = c.account_id"
    " GROUP BY c.id, c.session_id, c.cost HAVING c.cost <> -COALESCE(SUM(e.amount), 0)"
    " ORDER BY c.id"
)
_M4_DUPLICATES = (
    "SELECT session_id, COUNT(*) FROM cdr GROUP BY session_id HAVING COUNT(*) > 1"
    " ORDER BY session_id"
)
_M5 = (
    "SELECT e.id, e.account_id, e.reference, e.amount FROM ledger_entry e"
    " WHERE e.kind = 'CALL'"
    " AND NOT EXISTS (SELECT 1 FROM cdr c"
    "   WHERE c.session_id = e.reference AND c.account_id = e.account_id)"
    " AND e.reference NOT LIKE 'event:%'"
    " ORDER BY e.id"
)
_M6 = (
    "SELECT a.id, a.number, a.reserved, COALESCE(SUM(s.reserved), 0) FROM account a"
    " LEFT JOIN credit_session s ON s.account_id = a.id AND s.state = 'open'"
    " GROUP BY a.id, a.number, a.reserved HAVING a.reserved <> COALESCE(SUM(s.reserved), 0)"
    " ORDER BY a.id"
)
_M7 = (
    "SELECT session_id, reserved FROM credit_session WHERE state <> 'open' AND reserved <> 0"
    " ORDER BY session_id"
)


def money_violations(*, sessions: bool = True) -> Op[list[Violation]]:
    """Every broken money invariant in the database (empty list: all hold).
    `sessions=False` checks the accounts only (M1-M3)."""
    out: list[Violation] = []
    for aid, number, balance, total in (yield (_M1, ())):
        out.append(
            Violation("M1", f"account {number} (id {aid})", f"balance {balance} != sum of "
                      f"entries {total}")
        )
    for aid, number, balance, reserved in (yield (_M2_M3, ())):
        subject = f"account {number} (id {aid})"
        if reserved < 0:
            out.append(Violation("M2", subject, f"reserved {reserved} < 0"))
        if reserved > balance:
            out.append(Violation("M3", subject, f"reserved {reserved} > balance {balance}"))
    if not sessions:
        return out
    for cid, session_id, cost, total in (yield (_M4_COST, ())):
        out.append(
            Violation("M4", f"cdr {cid} (session {session_id})",
                      f"cost {cost} != CALL entries {-int(total)}")
        )
    for session_id, count in (yield (_M4_DUPLICATES, ())):
        out.append(Violation("M4", f"session {session_id}", f"{count} CDRs"))
    for eid, aid, reference, amount in (yield (_M5, ())):
        out.append(
            Violation("M5", f"ledger_entry {eid} (account id {aid})",
                      f"CALL {amount} for {reference!r} has no CDR and no event record")
        )
    for aid, number, reserved, held in (yield (_M6, ())):
        out.append(
            Violation("M6", f"account {number} (id {aid})",
                      f"reserved {reserved} != {held} held by its open sessions")
        )
    for session_id, reserved in (yield (_M7, ())):
        out.append(
            Violation("M7", f"session {session_id}", f"closed but still holds {reserved}")
        )
    return out


async def check_money(store: LedgerStore, *, sessions: bool = True) -> list[Violation]:
    return await store.run(money_violations(sessions=sessions))
