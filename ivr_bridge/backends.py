"""What the bridge asks of the rest of the platform, as small Protocols, and their adapters.

* `Directory`: PIN / caller ID / DID lookups and the pre-connect destination check
  (barred, affordable). `OcsDirectory` reads the OCS database (ocs.accounts, ocs.tariffs,
  ocs.rating) in-process: these are admin-path reads, not charging.
* `Recharge`: voucher recharge by phone. `OcsRecharge` calls the platform's one redemption
  rule, `ocs.vouchers.redeem`, and reduces its errors to what the caller is told.
* `Charging`: one `ChargingSession` per connected call, CCR-I / CCR-U / CCR-T.
  `CreditControlCharging` builds RFC 4006 requests and sends them through any
  `CreditControlClient` (the Diameter `ocs.diameter.client.GyClient` in production:
  the bridge is an ordinary credit-control client of the OCS, like a switch).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import time
from datetime import UTC, datetime
from typing import Protocol

from ivr_bridge.dialog import (
    AccountInfo,
    ChargingAnswered,
    DestinationChecked,
    DestinationStatus,
    SubscriberKind,
    TerminationCause,
    VoucherRedeemed,
    VoucherResult,
)
from ocs.credit_control import (
    CCAnswer,
    CCRequest,
    MsccRequest,
    RequestType,
    ResultCode,
    SubscriptionId,
    SubscriptionIdType,
    UsedUnits,
)

log = logging.getLogger(__name__)

RATING_GROUP = 100
SERVICE_IDENTIFIER = 1000
SERVICE_CONTEXT = "32260@3gpp.org"


class Directory(Protocol):
    async def account_by_pin(self, pin: str) -> AccountInfo | None: ...

    async def account_by_caller(self, number: str) -> AccountInfo | None: ...

    async def account_by_id(self, account_id: int) -> AccountInfo | None: ...

    async def did_target(self, account_id: int, did: str) -> str | None: ...

    async def check_destination(
        self, account: AccountInfo, destination: str
    ) -> DestinationChecked: ...


class ChargingSession(Protocol):
    session_id: str

    async def start(self, connect_delay: int) -> ChargingAnswered: ...

    async def update(self, used: int) -> ChargingAnswered: ...

    async def stop(
        self, used: int, cause: TerminationCause = TerminationCause.LOGOUT
    ) -> ChargingAnswered: ...


class Charging(Protocol):
    def open_session(
        self,
        account: AccountInfo,
        subscriber: SubscriberKind,
        calling: str,
        destination: str,
        call_id: str,
    ) -> ChargingSession: ...


class Lockout(Protocol):
    """Failed PIN / voucher attempts, counted where every process sees them."""

    async def is_locked(self, caller: str) -> bool: ...

    async def record_failure(self, caller: str, kind: str) -> bool: ...


class DbLockout:
    """`Lockout` in the OCS database, with the operator's limits (`ivr_bridge.lockout_store`)."""

    async def is_locked(self, caller: str) -> bool:
        from ivr_bridge import lockout_store

        return (await lockout_store.status(caller)).locked

    async def record_failure(self, caller: str, kind: str) -> bool:
        from ivr_bridge import lockout_store

        return (await lockout_store.record_failure(caller, kind)).locked


class Recharge(Protocol):
    """Voucher recharge: credit `account` with `code`, tell the dialog how it went."""

    async def redeem(self, code: str, account: AccountInfo, caller: str) -> VoucherRedeemed: ...


def voucher_result(error: Exception) -> VoucherResult:
    """What the caller is told for an error of `ocs.vouchers.redeem`."""
    from ocs import vouchers

    if isinstance(error, vouchers.VoucherUsed):
        return VoucherResult.USED
    if isinstance(error, vouchers.VoucherExpired):
        return VoucherResult.EXPIRED
    if isinstance(error, vouchers.VoucherError):  # malformed, unknown, voided
        return VoucherResult.INVALID
    return VoucherResult.ERROR  # e.g. accounts.UnknownAccount, the database down


class OcsRecharge:
    """`Recharge` through `ocs.vouchers.redeem` (the same rule as the REST API, the operator
    UI and the CLI), then the account re-read through `directory` for the new credit."""

    def __init__(self, directory: Directory) -> None:
        self.directory = directory

    async def redeem(self, code: str, account: AccountInfo, caller: str) -> VoucherRedeemed:
        from ocs import vouchers

        try:
            await vouchers.redeem(code, account.number, actor=f"ivr:{caller or 'anonymous'}")
        except Exception as exc:
            result = voucher_result(exc)
            if result is VoucherResult.ERROR:
                log.exception("voucher redemption for account %s failed", account.number)
            return VoucherRedeemed(result)
        try:
            refreshed = await self.directory.account_by_id(account.id)
        except Exception:  # credited; only the announcement of the new credit is lost
            log.exception("account %s: cannot read it after a voucher", account.number)
            refreshed = None
        return VoucherRedeemed(VoucherResult.OK, refreshed)


class CreditControlClient(Protocol):
    """Sends one CCR and returns its CCA (`GyClient.request` has this shape)."""

    async def request(self, req: CCRequest) -> CCAnswer: ...


class CreditControlHandlerLike(Protocol):
    async def handle(self, request: CCRequest) -> CCAnswer: ...


class InProcessClient:
    """Adapter: a `CreditControlHandler` (the OCS engine in the same process) as a client.

    For tests and single-process set-ups; production goes through Diameter."""

    def __init__(self, handler: CreditControlHandlerLike) -> None:
        self.handler = handler

    async def request(self, req: CCRequest) -> CCAnswer:
        return await self.handler.handle(req)


class ConnectableClient(CreditControlClient, Protocol):
    @property
    def is_open(self) -> bool: ...

    async def connect(self) -> None: ...


class ReconnectingClient:
    """Re-opens the Diameter connection (CER/CEA) on demand when it was lost.

    At most one attempt per `min_interval` seconds; meanwhile requests fail fast, and the
    dialog treats a failed CCR as a refusal (the caller is told, nothing is bridged)."""

    def __init__(self, client: ConnectableClient, min_interval: float = 1.0) -> None:
        self.client = client
        self.min_interval = min_interval
        self._lock = asyncio.Lock()
        self._last_attempt = -1e9

    async def request(self, req: CCRequest) -> CCAnswer:
        if not self.client.is_open:
            async with self._lock:
                now = time.monotonic()
                if not self.client.is_open and now - self._last_attempt >= self.min_interval:
                    self._last_attempt = now
                    log.info("credit-control connection lost: reconnecting")
                    await self.client.connect()
        return await self.client.request(req)


# --------------------------------------------------------------------------- directory


class OcsDirectory:
    """Reads accounts, DIDs, operator settings and tariffs from the OCS database."""

    async def _info(self, account: object) -> AccountInfo:
        from ocs import money, settings_store
        from ocs.models import Cdr

        settings = await settings_store.load_operator_settings()
        available = max(0, int(account.balance) - int(account.reserved))  # type: ignore[attr-defined]
        account_id = int(account.id)  # type: ignore[attr-defined]
        # Last number this account called (redial key): its newest CDR.
        last = await Cdr.filter(account_id=account_id).order_by("-id").first()
        return AccountInfo(
            id=account_id,
            number=str(account.number),  # type: ignore[attr-defined]
            language=str(account.language or settings.default_language),  # type: ignore[attr-defined]
            available_units=available,
            credit_money=money.units_to_money(available, settings.unit_price),
            pin_required=bool(account.ivr_pin_required),  # type: ignore[attr-defined]
            last_dialed=last.dialed if last is not None else "",
        )

    async def account_by_pin(self, pin: str) -> AccountInfo | None:
        from ocs import accounts

        account = await accounts.find_by_pin(pin)
        return None if account is None else await self._info(account)

    async def account_by_caller(self, number: str) -> AccountInfo | None:
        from ocs import accounts

        account = await accounts.find_by_caller_id(number)
        return None if account is None else await self._info(account)

    async def account_by_id(self, account_id: int) -> AccountInfo | None:
        from ocs.models import Account

        account = await Account.get_or_none(id=account_id)
        return None if account is None else await self._info(account)

    async def did_target(self, account_id: int, did: str) -> str | None:
        from ocs import accounts

        return await accounts.find_did(account_id, did)

    async def check_destination(self, account: AccountInfo, destination: str) -> DestinationChecked:
        from ocs import rating, settings_store, tariffs

        settings = await settings_store.load_operator_settings()
        try:
            tariff = (await tariffs.load_table()).resolve(destination)
        except rating.BarredDestination:
            return DestinationChecked(DestinationStatus.BARRED)
        except rating.NoTariff:
            return DestinationChecked(DestinationStatus.BARRED)
        except rating.RatingError:
            return DestinationChecked(DestinationStatus.INVALID)
        seconds = rating.affordable(tariff, account.available_units, datetime.now(UTC), settings.tz)
        if seconds is not None and seconds <= 0:
            return DestinationChecked(DestinationStatus.NO_CREDIT, 0)
        return DestinationChecked(DestinationStatus.OK, seconds)


# --------------------------------------------------------------------------- charging


def answer_to_event(answer: CCAnswer) -> ChargingAnswered:
    """Reduce a CCA to what the dialog needs: ok, granted seconds, final units."""
    code = answer.result_code
    granted = answer.granted_time
    fua = answer.final_unit_action
    if answer.mscc:
        m = answer.mscc[0]
        if code == ResultCode.SUCCESS:
            code = m.result_code
        granted = m.granted_time if m.granted_time is not None else granted
        fua = m.final_unit_action if m.final_unit_action is not None else fua
    ok = code in (ResultCode.SUCCESS, ResultCode.LIMITED_SUCCESS)
    return ChargingAnswered(
        ok=ok,
        granted=int(granted or 0),
        # any Final-Unit-Indication: these are the last units (TERMINATE is all we support)
        final=fua is not None,
        result_code=int(code),
    )


class CreditControlSession:
    """One RFC 4006 session (CCR-I, CCR-U…, CCR-T) for one connected call."""

    def __init__(
        self,
        client: CreditControlClient,
        session_id: str,
        origin_host: str,
        origin_realm: str,
        subscription: SubscriptionId,
        calling: str,
        destination: str,
        call_id: str,
    ) -> None:
        self.client = client
        self.session_id = session_id
        self.origin_host = origin_host
        self.origin_realm = origin_realm
        self.subscription = subscription
        self.calling = calling
        self.destination = destination
        self.call_id = call_id
        self.next_number = 0
        self.connect_delay: int | None = None
        self.requests: list[CCRequest] = []  # kept for inspection (tests, logs)

    def _request(
        self,
        rtype: RequestType,
        used: int | None,
        requested: bool,
        cause: TerminationCause = TerminationCause.LOGOUT,
    ) -> CCRequest:
        usage = (UsedUnits(cc_time=used),) if used is not None else ()
        req = CCRequest(
            session_id=self.session_id,
            origin_host=self.origin_host,
            origin_realm=self.origin_realm,
            request_type=rtype,
            request_number=self.next_number,
            subscription_ids=(self.subscription,),
            called_party=self.destination,
            calling_party=self.calling,
            mscc=(MsccRequest(RATING_GROUP, SERVICE_IDENTIFIER, requested, None, usage),),
            event_timestamp=datetime.now(UTC),
            user_name=self.subscription.data,
            service_context_id=SERVICE_CONTEXT,
            termination_cause=int(cause) if rtype is RequestType.TERMINATE else None,
            call_id=self.call_id,
            connect_delay=self.connect_delay,
        )
        self.next_number += 1
        self.requests.append(req)
        return req

    async def _send(self, req: CCRequest) -> ChargingAnswered:
        try:
            answer = await self.client.request(req)
        except Exception as exc:  # noqa: BLE001 -- OCS unreachable / timeout / broken answer: the caller hears a refusal, never silence
            log.warning("CCR %s #%d failed: %s", req.session_id, req.request_number, exc)
            return ChargingAnswered(ok=False, result_code=ResultCode.UNABLE_TO_DELIVER)
        return answer_to_event(answer)

    async def start(self, connect_delay: int) -> ChargingAnswered:
        self.connect_delay = connect_delay
        return await self._send(self._request(RequestType.INITIAL, None, True))

    async def update(self, used: int) -> ChargingAnswered:
        return await self._send(self._request(RequestType.UPDATE, used, True))

    async def stop(
        self, used: int, cause: TerminationCause = TerminationCause.LOGOUT
    ) -> ChargingAnswered:
        """CCR-T; `cause` is the RFC 6733 Termination-Cause (6 AUTH_EXPIRED for a credit
        cut, 4 ADMINISTRATIVE after an ASR, 1 LOGOUT for a normal hang-up)."""
        return await self._send(self._request(RequestType.TERMINATE, used, False, cause))


class CreditControlCharging:
    """Opens `CreditControlSession`s on a credit-control client."""

    def __init__(
        self,
        client: CreditControlClient,
        origin_host: str = "ivr.localdomain",
        origin_realm: str = "localdomain",
    ) -> None:
        self.client = client
        self.origin_host = origin_host
        self.origin_realm = origin_realm
        self._ids = itertools.count(1)

    def open_session(
        self,
        account: AccountInfo,
        subscriber: SubscriberKind,
        calling: str,
        destination: str,
        call_id: str,
    ) -> CreditControlSession:
        if subscriber is SubscriberKind.E164:
            subscription = SubscriptionId(SubscriptionIdType.END_USER_E164, calling)
        else:
            subscription = SubscriptionId(SubscriptionIdType.END_USER_PRIVATE, account.number)
        session_id = f"{self.origin_host};{int(time.time())};{os.getpid()};{next(self._ids)}"
        return CreditControlSession(
            self.client, session_id, self.origin_host, self.origin_realm, subscription,
            calling, destination, call_id,
        )  # fmt: skip
