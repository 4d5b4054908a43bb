"""Who pays for a request: its Subscription-Ids (or calling party) as account lookups.

Pure: `candidates()` turns a request into (table, key) lookups in order of preference, and
`pick()` chooses the first that a batch's lookup found. The lookup itself is one statement
for the whole batch (`lookup_statement`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from ocs import rating
from ocs.credit_control import CCRequest, SubscriptionIdType
from ocs.ledger import Dialect, Row, Statement

# A request names its subscriber a few ways at most; more is noise or an attack.
MAX_CANDIDATES = 16

Candidate = tuple[str, str]  # ("account" | "caller", key)


@dataclass(frozen=True, slots=True)
class Subscriber:
    account_id: int
    number: str
    active: bool


def digits(raw: str) -> str | None:
    try:
        return rating.normalise_number(raw)
    except rating.RatingError:
        return None


def candidates(req: CCRequest) -> list[Candidate]:
    """(table, key) lookups in order of preference: account number or caller ID."""
    out: list[Candidate] = []
    for sub in req.subscription_ids:
        if len(out) >= MAX_CANDIDATES:
            break
        data = sub.data.strip()
        if sub.type is SubscriptionIdType.END_USER_PRIVATE:
            out.append(("account", data))
        elif sub.type in (SubscriptionIdType.END_USER_E164, SubscriptionIdType.END_USER_SIP_URI):
            number = digits(data)
            if number:
                out += [("caller", number), ("account", number)]
            elif sub.type is SubscriptionIdType.END_USER_SIP_URI:
                user = data.split(":", 1)[-1].split("@", 1)[0]
                out.append(("account", user))
        elif sub.type is SubscriptionIdType.END_USER_NAI:
            user = data.split("@", 1)[0]
            out.append(("account", user))
            number = digits(user)
            if number:
                out.append(("caller", number))
        else:
            out.append(("account", data))
    if not out and req.calling_party:
        number = digits(req.calling_party)
        if number:
            out.append(("caller", number))
    return list(dict.fromkeys(out))[:MAX_CANDIDATES]


def calling_number(req: CCRequest) -> str:
    """The caller's number for the CDR: Calling-Party-Address, else an E.164/SIP id."""
    number = digits(req.calling_party or "")
    if number:
        return number
    for s in req.subscription_ids:
        if s.type in (SubscriptionIdType.END_USER_E164, SubscriptionIdType.END_USER_SIP_URI):
            number = digits(s.data)
            if number:
                return number
    return ""


def lookup_statement(wanted: Iterable[Candidate], dialect: Dialect) -> Statement | None:
    """One statement finding every candidate of a batch: rows (table, key, id, number,
    status)."""
    wanted = list(wanted)
    accounts = sorted({key for table, key in wanted if table == "account"})
    callers = sorted({key for table, key in wanted if table == "caller"})
    if not accounts and not callers:
        return None
    return (
        "SELECT 'account', number, id, number, status FROM account WHERE "
        + dialect.in_list("number", "text")
        + " UNION ALL SELECT 'caller', c.number, a.id, a.number, a.status FROM caller_id c"
        " JOIN account a ON a.id = c.account_id WHERE " + dialect.in_list("c.number", "text"),
        (dialect.list_param(accounts), dialect.list_param(callers)),
    )


def found(rows: Iterable[Row]) -> dict[Candidate, Subscriber]:
    return {
        (str(r[0]), str(r[1])): Subscriber(int(r[2]), str(r[3]), r[4] == "active") for r in rows
    }


def pick(wanted: Iterable[Candidate], known: Mapping[Candidate, Subscriber]) -> Subscriber | None:
    for candidate in wanted:
        subscriber = known.get(candidate)
        if subscriber is not None:
            return subscriber
    return None
