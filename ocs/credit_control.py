"""Protocol-neutral credit-control request and answer.

The Diameter layer (`ocs.diameter`) decodes a CCR into a `CCRequest` and encodes a
`CCAnswer` back into a CCA; the charging engine (`ocs.charging`) only ever sees these
types. Keeping the seam here lets each side be tested without the other.

Numbering follows RFC 4006 / 3GPP TS 32.299 so values can be copied straight to the wire.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol


class RequestType(enum.IntEnum):
    INITIAL = 1
    UPDATE = 2
    TERMINATE = 3
    EVENT = 4


class RequestedAction(enum.IntEnum):
    DIRECT_DEBITING = 0
    REFUND_ACCOUNT = 1
    CHECK_BALANCE = 2
    PRICE_ENQUIRY = 3


class SubscriptionIdType(enum.IntEnum):
    END_USER_E164 = 0
    END_USER_IMSI = 1
    END_USER_SIP_URI = 2
    END_USER_NAI = 3
    END_USER_PRIVATE = 4


class TariffChangeUsage(enum.IntEnum):
    UNIT_BEFORE_TARIFF_CHANGE = 0
    UNIT_AFTER_TARIFF_CHANGE = 1
    UNIT_INDETERMINATE = 2


class ResultCode(enum.IntEnum):
    SUCCESS = 2001
    LIMITED_SUCCESS = 2002
    COMMAND_UNSUPPORTED = 3001
    UNABLE_TO_DELIVER = 3002
    APPLICATION_UNSUPPORTED = 3007
    INVALID_HDR_BITS = 3008
    INVALID_AVP_BITS = 3009
    UNKNOWN_PEER = 3010
    END_USER_SERVICE_DENIED = 4010
    CREDIT_CONTROL_NOT_APPLICABLE = 4011
    CREDIT_LIMIT_REACHED = 4012
    AVP_UNSUPPORTED = 5001
    UNKNOWN_SESSION_ID = 5002
    INVALID_AVP_VALUE = 5004
    MISSING_AVP = 5005
    UNABLE_TO_COMPLY = 5012
    USER_UNKNOWN = 5030
    RATING_FAILED = 5031


class FinalUnitAction(enum.IntEnum):
    TERMINATE = 0
    REDIRECT = 1
    RESTRICT_ACCESS = 2


@dataclass(frozen=True, slots=True)
class SubscriptionId:
    type: SubscriptionIdType
    data: str


@dataclass(frozen=True, slots=True)
class UsedUnits:
    """One Used-Service-Unit: seconds used, optionally split around a tariff change."""

    cc_time: int
    tariff_change_usage: TariffChangeUsage | None = None


@dataclass(frozen=True, slots=True)
class MsccRequest:
    """One Multiple-Services-Credit-Control of a CCR."""

    rating_group: int | None = None
    service_identifier: int | None = None
    requested: bool = False  # a Requested-Service-Unit AVP was present
    requested_time: int | None = None  # its CC-Time, if any (None = "server decides")
    used: tuple[UsedUnits, ...] = ()


@dataclass(frozen=True, slots=True)
class CCRequest:
    session_id: str
    origin_host: str
    origin_realm: str
    request_type: RequestType
    request_number: int
    subscription_ids: tuple[SubscriptionId, ...] = ()
    called_party: str | None = None  # raw, e.g. "sip:+33141587070@ims" or "tel:0141587070"
    calling_party: str | None = None
    requested_action: RequestedAction | None = None
    # When the CCR carried MSCC, `mscc` holds them; otherwise the top-level units below.
    mscc: tuple[MsccRequest, ...] | None = None
    requested: bool = False
    requested_time: int | None = None
    used: tuple[UsedUnits, ...] = ()
    event_timestamp: datetime | None = None
    user_name: str | None = None
    service_context_id: str | None = None
    termination_cause: int | None = None
    call_id: str | None = None  # SIP Call-ID / IMS-Charging-Identifier when present
    connect_delay: int | None = None  # seconds INVITE->answer, when the client knows it
    retransmission: bool = False  # Diameter T flag


@dataclass(frozen=True, slots=True)
class MsccAnswer:
    result_code: int
    rating_group: int | None = None
    service_identifier: int | None = None
    granted_time: int | None = None
    validity_time: int | None = None
    final_unit_action: FinalUnitAction | None = None
    tariff_time_change: datetime | None = None


@dataclass(frozen=True, slots=True)
class CCAnswer:
    result_code: int
    request_type: RequestType
    request_number: int
    mscc: tuple[MsccAnswer, ...] | None = None
    # top-level grant when the request did not use MSCC
    granted_time: int | None = None
    validity_time: int | None = None
    final_unit_action: FinalUnitAction | None = None
    tariff_time_change: datetime | None = None
    # units left to spend (balance - reserved) after this request; None when unknown
    remaining_balance: int | None = None
    # Cost-Information (PRICE_ENQUIRY, and the cost of a DIRECT_DEBITING event)
    cost_units: int | None = None
    # Money on the wire (Cost-Information, Remaining-Balance) is units x unit price, and
    # the unit price is unit_price_digits x 10**unit_price_exponent (0.0001 = 1 x 10**-4).
    currency_code: int = 978  # ISO 4217 numeric; 978 = EUR
    unit_price_exponent: int = -4
    unit_price_digits: int = 1
    failed_avp_code: int | None = None
    error_message: str | None = None
    extra: dict[str, object] = field(default_factory=dict)


class CreditControlHandler(Protocol):
    """What the Diameter server calls for every CCR (implemented by ocs.charging)."""

    async def handle(self, request: CCRequest) -> CCAnswer: ...


class PeerGateway(Protocol):
    """Server-initiated requests towards the client that owns a session
    (implemented by the Diameter server)."""

    async def send_rar(self, session_id: str) -> int:
        """Send a Re-Auth-Request; returns the RAA Result-Code (or raises)."""
        ...

    async def send_asr(self, session_id: str) -> int:
        """Send an Abort-Session-Request; returns the ASA Result-Code (or raises)."""
        ...
