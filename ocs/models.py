"""Tortoise ORM models: the persistent state of the platform.

Money columns are integers in units. `Account.balance` is a cached sum of the account's
ledger entries (kept in the same transaction as each entry); `Account.reserved` is the sum of
live reservations. Invariants (checked by tests): balance == sum(ledger amounts) and
0 <= reserved <= balance.
"""

from __future__ import annotations

import enum
from typing import Any

from tortoise import fields
from tortoise.models import Model


class AccountStatus(enum.StrEnum):
    ACTIVE = "active"
    BLOCKED = "blocked"


class LedgerKind(enum.StrEnum):
    CREDIT = "CREDIT"
    CALL = "CALL"
    ADJUST = "ADJUST"
    REFUND = "REFUND"


class OperatorRole(enum.StrEnum):
    """Web UI / REST roles, lowest to highest (see docs/API.md for what each may do)."""

    READONLY = "readonly"
    OPERATOR = "operator"
    ADMIN = "admin"


class SessionState(enum.StrEnum):
    OPEN = "open"
    CLOSED = "closed"


class Account(Model):
    id = fields.IntField(primary_key=True)
    number = fields.CharField(max_length=32, unique=True)
    name = fields.CharField(max_length=128, default="")
    # HMAC-SHA256(secret key, PIN): lets the IVR find an account by PIN alone while the
    # PIN itself is never stored; the key lives outside the database (data dir).
    pin_index = fields.CharField(max_length=64, null=True, unique=True)
    language = fields.CharField(max_length=8, default="FR")
    status = fields.CharEnumField(AccountStatus, max_length=16, default=AccountStatus.ACTIVE)
    balance = fields.BigIntField(default=0)
    reserved = fields.BigIntField(default=0)
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)
    # IVR access number: ask the PIN even when the caller ID is recognised (anti-spoofing).
    ivr_pin_required = fields.BooleanField(default=False)

    class Meta:
        table = "account"
        # Low-balance list (dashboard, Users filter) and the balance sort.
        indexes = (("balance",),)

    @property
    def available(self) -> int:
        return self.balance - self.reserved


class CallerId(Model):
    id = fields.IntField(primary_key=True)
    account: fields.ForeignKeyRelation[Account] = fields.ForeignKeyField(
        "ocs.Account", related_name="caller_ids", on_delete=fields.CASCADE
    )
    number = fields.CharField(max_length=64, unique=True)

    class Meta:
        table = "caller_id"


class DidMapping(Model):
    id = fields.IntField(primary_key=True)
    account: fields.ForeignKeyRelation[Account] = fields.ForeignKeyField(
        "ocs.Account", related_name="dids", on_delete=fields.CASCADE
    )
    did = fields.CharField(max_length=64)
    forward_to = fields.CharField(max_length=64)

    class Meta:
        table = "did_mapping"
        unique_together = (("account", "did"),)


class Tariff(Model):
    id = fields.IntField(primary_key=True)
    prefix = fields.CharField(max_length=32, unique=True)
    h1_rate = fields.IntField()
    h2_begin = fields.SmallIntField(default=0)
    h2_end = fields.SmallIntField(default=0)
    h2_rate = fields.IntField(default=0)
    initial_block = fields.IntField(default=1)
    increment = fields.IntField(default=1)
    connection_charge = fields.IntField(default=0)
    barred = fields.BooleanField(default=False)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "tariff"


class LedgerEntry(Model):
    id = fields.BigIntField(primary_key=True)
    account: fields.ForeignKeyRelation[Account] = fields.ForeignKeyField(
        "ocs.Account", related_name="ledger", on_delete=fields.RESTRICT
    )
    kind = fields.CharEnumField(LedgerKind, max_length=16)
    amount = fields.BigIntField()
    balance_after = fields.BigIntField()
    reference = fields.CharField(max_length=255, default="")  # session id, API request…
    actor = fields.CharField(max_length=64, default="")  # who: admin, api key, ocs
    note = fields.CharField(max_length=255, default="")
    dialed = fields.CharField(max_length=64, default="")
    duration = fields.IntField(default=0)
    created_at = fields.DatetimeField(auto_now_add=True, db_index=True)

    class Meta:
        table = "ledger_entry"
        # Per-account scans in id order (statements, account pages, invariant checks).
        indexes = (("account_id", "id"),)


class CreditSession(Model):
    """A live or finished Diameter credit-control session (one call)."""

    id = fields.BigIntField(primary_key=True)
    session_id = fields.CharField(max_length=255, unique=True)
    account: fields.ForeignKeyNullableRelation[Account] = fields.ForeignKeyField(
        "ocs.Account", related_name="sessions", null=True, on_delete=fields.SET_NULL
    )
    state = fields.CharEnumField(SessionState, max_length=16, default=SessionState.OPEN)
    peer = fields.CharField(max_length=255, default="")
    calling = fields.CharField(max_length=64, default="")
    called = fields.CharField(max_length=64, default="")
    tariff_prefix = fields.CharField(max_length=32, default="")
    rate = fields.IntField(default=0)
    reserved = fields.BigIntField(default=0)
    used_seconds = fields.IntField(default=0)
    cost = fields.BigIntField(default=0)
    # CC-Request-Number is an Unsigned32: it does not fit an INTEGER column.
    last_request_number = fields.BigIntField(default=0)
    # What another process needs to carry the call on: tariff, services, usage pieces.
    # JSON text (ocs.charging.state): written on every request, read only by the charging
    # core, so not jsonb (PostgreSQL would parse it on every write)
    charging_state = fields.TextField(null=True)
    started_at = fields.DatetimeField()
    # Open sessions only (NULL once closed), so the Tcc sweep's index scan sees live ones.
    expires_at = fields.DatetimeField(null=True, db_index=True)
    updated_at = fields.DatetimeField(auto_now=True)
    end_reason = fields.CharField(max_length=64, default="")
    # An operator cut the call: further credit is refused even if the switch ignored the ASR.
    killed = fields.BooleanField(default=False)

    class Meta:
        table = "credit_session"


class CcAnswer(Model):
    """Every credit-control answer given, so that any copy of a request, reaching any OCS
    process at any later time, gets the identical answer (kept `OCS_ANSWER_RETENTION`)."""

    id = fields.BigIntField(primary_key=True)
    session_id = fields.CharField(max_length=255)
    request_type = fields.SmallIntField()
    request_number = fields.BigIntField()
    answer = fields.TextField()  # JSON (ocs.charging.state.answer_to_json)
    created_at = fields.DatetimeField()  # purged in id order (ids grow with time)

    class Meta:
        table = "cc_answer"
        unique_together = (("session_id", "request_type", "request_number"),)


class Cdr(Model):
    id = fields.BigIntField(primary_key=True)
    account: fields.ForeignKeyNullableRelation[Account] = fields.ForeignKeyField(
        "ocs.Account", related_name="cdrs", null=True, on_delete=fields.SET_NULL
    )
    account_number = fields.CharField(max_length=32, default="", db_index=True)
    session_id = fields.CharField(max_length=255, db_index=True)
    call_id = fields.CharField(max_length=255, default="")
    calling = fields.CharField(max_length=64, default="")
    dialed = fields.CharField(max_length=64, default="")  # no index: LIKE prefix cannot use one
    started_at = fields.DatetimeField(db_index=True)  # answer time
    connect_delay = fields.IntField(null=True)
    duration = fields.IntField(default=0)
    cost = fields.BigIntField(default=0)
    tariff_prefix = fields.CharField(max_length=32, default="")
    end_reason = fields.CharField(max_length=64, default="")
    created_at = fields.DatetimeField(auto_now_add=True)
    billing_run: fields.ForeignKeyNullableRelation[BillingRun] = fields.ForeignKeyField(
        "ocs.BillingRun", related_name="cdrs", null=True, on_delete=fields.SET_NULL
    )

    class Meta:
        table = "cdr"
        # Dashboard aggregates (calls, minutes, revenue, top prefixes over a date range) read
        # only this covering index; "last call" per account for the Users sort.
        indexes = (
            ("created_at", "tariff_prefix", "duration", "cost"),
            ("account_id", "created_at"),
        )


class BillingRun(Model):
    id = fields.IntField(primary_key=True)
    started_at = fields.DatetimeField(auto_now_add=True)
    finished_at = fields.DatetimeField(null=True)
    period_end = fields.DatetimeField(null=True)  # ledger entries up to this instant
    last_ledger_id = fields.BigIntField(default=0)  # highest ledger entry included
    filename = fields.CharField(max_length=128, default="")
    status = fields.CharField(max_length=16, default="running")
    accounts = fields.IntField(default=0)
    lines = fields.IntField(default=0)

    class Meta:
        table = "billing_run"


class StatementBalance(Model):
    """Closing balance of an account at a billing run: the next run's REPORT line."""

    id = fields.BigIntField(primary_key=True)
    run: fields.ForeignKeyRelation[BillingRun] = fields.ForeignKeyField(
        "ocs.BillingRun", related_name="balances", on_delete=fields.CASCADE
    )
    account: fields.ForeignKeyRelation[Account] = fields.ForeignKeyField(
        "ocs.Account", related_name="statement_balances", on_delete=fields.CASCADE
    )
    total = fields.BigIntField()

    class Meta:
        table = "statement_balance"
        unique_together = (("run", "account"),)


class Setting(Model):
    key = fields.CharField(max_length=64, primary_key=True)
    value: fields.JSONField[Any] = fields.JSONField()

    class Meta:
        table = "setting"


class ApiKey(Model):
    id = fields.IntField(primary_key=True)
    name = fields.CharField(max_length=64)
    prefix = fields.CharField(max_length=16, unique=True)  # shown to operators
    key_hash = fields.CharField(max_length=128)
    created_at = fields.DatetimeField(auto_now_add=True)
    revoked = fields.BooleanField(default=False)
    # db_default: keys made before roles existed get "admin" (they had full access).
    role = fields.CharEnumField(OperatorRole, max_length=16, default=OperatorRole.ADMIN,
                                db_default=OperatorRole.ADMIN.value)

    class Meta:
        table = "api_key"


# --- operator tools (migration 0003_operator_tools) ------------------------------------


class VoucherStatus(enum.StrEnum):
    UNUSED = "unused"
    USED = "used"
    VOIDED = "voided"


class VoucherBatch(Model):
    """N prepaid vouchers of one value, generated together (codes printed from its CSV)."""

    id = fields.IntField(primary_key=True)
    label = fields.CharField(max_length=128, default="")
    value = fields.BigIntField()  # units credited by one voucher
    count = fields.IntField()
    expires_at = fields.DatetimeField(null=True)
    voided_at = fields.DatetimeField(null=True)
    created_by = fields.CharField(max_length=64, default="")
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "voucher_batch"


class Voucher(Model):
    """One voucher. The code itself is never stored: only its keyed hash (like PINs)."""

    id = fields.BigIntField(primary_key=True)
    batch: fields.ForeignKeyRelation[VoucherBatch] = fields.ForeignKeyField(
        "ocs.VoucherBatch", related_name="vouchers", on_delete=fields.RESTRICT
    )
    serial = fields.CharField(max_length=32, unique=True)  # printed beside the code
    code_hash = fields.CharField(max_length=64, unique=True)
    status = fields.CharEnumField(VoucherStatus, max_length=16, default=VoucherStatus.UNUSED)
    used_at = fields.DatetimeField(null=True)
    used_by: fields.ForeignKeyNullableRelation[Account] = fields.ForeignKeyField(
        "ocs.Account", related_name="vouchers", null=True, on_delete=fields.RESTRICT
    )
    redeemed_by = fields.CharField(max_length=64, default="")  # actor
    ledger_entry_id = fields.BigIntField(null=True)

    class Meta:
        table = "voucher"
        indexes = (("batch_id", "status"),)


class CardBatch(Model):
    """Calling cards generated together: accounts first_number..last_number with PINs."""

    id = fields.IntField(primary_key=True)
    label = fields.CharField(max_length=128, default="")
    count = fields.IntField()
    first_number = fields.CharField(max_length=32)
    last_number = fields.CharField(max_length=32)
    initial_credit = fields.BigIntField(default=0)
    pin_length = fields.SmallIntField()
    created_by = fields.CharField(max_length=64, default="")
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "card_batch"


class DashboardDay(Model):
    """Dashboard figures of one finished local day, per tariff prefix (prefix "*" = the
    day's total, also written for a day without calls). A finished day's CDRs never change,
    so the dashboard aggregates each day once; only the current day is read live."""

    id = fields.IntField(primary_key=True)
    tz = fields.CharField(max_length=64)
    day = fields.CharField(max_length=10)  # YYYY-MM-DD, local to tz
    tariff_prefix = fields.CharField(max_length=32)
    calls = fields.BigIntField(default=0)
    answered = fields.BigIntField(default=0)
    seconds = fields.BigIntField(default=0)
    revenue = fields.BigIntField(default=0)

    class Meta:
        table = "dashboard_day"
        unique_together = (("tz", "day", "tariff_prefix"),)


class IvrFailure(Model):
    """A failed PIN (or voucher) attempt on the IVR: the lockout counts these."""

    id = fields.BigIntField(primary_key=True)
    caller = fields.CharField(max_length=64)
    kind = fields.CharField(max_length=16, default="pin")
    created_at = fields.DatetimeField(db_index=True)

    class Meta:
        table = "ivr_failure"
        indexes = (("caller", "created_at"),)


class IvrLock(Model):
    """A caller ID locked out of PIN / voucher entry until `locked_until`."""

    caller = fields.CharField(max_length=64, primary_key=True)
    locked_until = fields.DatetimeField()
    failures = fields.IntField(default=0)
    created_at = fields.DatetimeField()

    class Meta:
        table = "ivr_lock"


class IvrLogLine(Model):
    """One service-log line: a dialog step of an IVR call (`ivr_bridge.servicelog`)."""

    id = fields.BigIntField(primary_key=True)
    call_id = fields.CharField(max_length=255, db_index=True)
    step = fields.IntField()
    created_at = fields.DatetimeField(db_index=True)
    line: fields.JSONField[Any] = fields.JSONField()

    class Meta:
        table = "ivr_log"


class Operator(Model):
    """A person who logs in to the web UI: own password (scrypt record), own role."""

    id = fields.IntField(primary_key=True)
    name = fields.CharField(max_length=64, unique=True)
    role = fields.CharEnumField(OperatorRole, max_length=16, default=OperatorRole.READONLY)
    password: fields.JSONField[Any] = fields.JSONField()
    disabled = fields.BooleanField(default=False)
    created_at = fields.DatetimeField(auto_now_add=True)
    last_login_at = fields.DatetimeField(null=True)

    class Meta:
        table = "operator"


class AuditEntry(Model):
    """Who changed what and when (ocs.audit.record writes these)."""

    id = fields.BigIntField(primary_key=True)
    at = fields.DatetimeField(db_index=True)
    actor = fields.CharField(max_length=64, db_index=True)  # operator name, api:<key>, cli:<user>
    action = fields.CharField(max_length=64, db_index=True)  # object.verb, e.g. credit.add
    target = fields.CharField(max_length=255, default="", db_index=True)
    details: fields.JSONField[Any] = fields.JSONField(null=True)
    address = fields.CharField(max_length=64, default="")  # client address, when known

    class Meta:
        table = "audit_entry"


class LoginThrottle(Model):
    """Login attempts per fixed time window, for one key (user:<name>, addr:<ip>, global).

    In the database so that limits hold across restarts and across OCS processes."""

    key = fields.CharField(max_length=200, primary_key=True)  # "<scope>@<window start>"
    count = fields.IntField(default=0)
    expires = fields.BigIntField(db_index=True)  # Unix seconds: the end of the window

    class Meta:
        table = "login_throttle"
