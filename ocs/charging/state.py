"""A live credit-control session as the engine keeps it, and the JSON forms in the database.

`credit_session.charging_state` holds the session's rating state (tariff, services, usage
pieces), so that another OCS process, or this one after a restart, can carry on a session it
did not start. Answers are kept apart, one row per request (`cc_answer`, see
`ocs.charging.records`), in the JSON form of `answer_to_json`.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from ocs import rating
from ocs.charging.quota import ServiceUsage
from ocs.credit_control import CCAnswer, FinalUnitAction, MsccAnswer, RequestType

ServiceKey = tuple[int | None, int | None]


@dataclass(slots=True)
class LiveSession:
    session_id: str
    account_id: int
    account_number: str
    calling: str
    called: str
    tariff: rating.Tariff
    started_at: datetime
    peer: str
    services: dict[ServiceKey, ServiceUsage]
    last_request_number: int
    expires_at: datetime
    call_id: str = ""
    connect_delay: int | None = None
    final_units: bool = False  # a Final-Unit-Indication was sent
    uses_mscc: bool = False

    def moved_on(
        self,
        services: dict[ServiceKey, ServiceUsage],
        last_request_number: int,
        expires_at: datetime,
        final_units: bool,
    ) -> LiveSession:
        """The session after a request (a copy: outcomes never alias the cached one)."""
        return LiveSession(
            self.session_id,
            self.account_id,
            self.account_number,
            self.calling,
            self.called,
            self.tariff,
            self.started_at,
            self.peer,
            services,
            last_request_number,
            expires_at,
            self.call_id,
            self.connect_delay,
            final_units,
            self.uses_mscc,
        )

    @property
    def reserved(self) -> int:
        return sum(s.reserved for s in self.services.values())

    @property
    def used(self) -> int:
        return sum(s.used for s in self.services.values())


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICRO = timedelta(microseconds=1)


def _dt(value: datetime | None) -> int | None:
    """An instant as whole microseconds since the epoch: exact, and cheap both ways."""
    return None if value is None else (value - _EPOCH) // _MICRO


def _undt(value: int | str | None) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, str):  # written by an earlier version
        return datetime.fromisoformat(value)
    return _EPOCH + value * _MICRO


def _mscc_to_json(m: MsccAnswer) -> dict[str, Any]:
    data: dict[str, Any] = {"result_code": m.result_code}
    for name, value in (
        ("rating_group", m.rating_group),
        ("service_identifier", m.service_identifier),
        ("granted_time", m.granted_time),
        ("validity_time", m.validity_time),
    ):
        if value is not None:
            data[name] = value
    if m.final_unit_action is not None:
        data["final_unit_action"] = int(m.final_unit_action)
    if m.tariff_time_change is not None:
        data["tariff_time_change"] = _dt(m.tariff_time_change)
    return data


_ANSWER_FIELDS = (
    "granted_time",
    "validity_time",
    "remaining_balance",
    "cost_units",
    "failed_avp_code",
    "error_message",
)


def answer_to_json(answer: CCAnswer) -> dict[str, Any]:
    """An answer as stored (cc_answer): `answer_from_json` gives it back equal."""
    data: dict[str, Any] = {
        "result_code": int(answer.result_code),
        "request_type": int(answer.request_type),
        "request_number": answer.request_number,
        "currency_code": answer.currency_code,
        "unit_price_exponent": answer.unit_price_exponent,
        "unit_price_digits": answer.unit_price_digits,
    }
    for name in _ANSWER_FIELDS:
        value = getattr(answer, name)
        if value is not None:
            data[name] = value
    if answer.final_unit_action is not None:
        data["final_unit_action"] = int(answer.final_unit_action)
    if answer.tariff_time_change is not None:
        data["tariff_time_change"] = _dt(answer.tariff_time_change)
    if answer.mscc is not None:
        data["mscc"] = [_mscc_to_json(m) for m in answer.mscc]
    return data


def answer_from_json(data: dict[str, Any]) -> CCAnswer:
    values = dict(data)
    values["request_type"] = RequestType(values["request_type"])
    values["tariff_time_change"] = _undt(values.get("tariff_time_change"))
    if values.get("final_unit_action") is not None:
        values["final_unit_action"] = FinalUnitAction(values["final_unit_action"])
    mscc = values.pop("mscc", None)
    if mscc is not None:
        values["mscc"] = tuple(
            MsccAnswer(
                **{
                    **m,
                    "tariff_time_change": _undt(m.get("tariff_time_change")),
                    "final_unit_action": (
                        FinalUnitAction(m["final_unit_action"])
                        if m.get("final_unit_action") is not None
                        else None
                    ),
                }
            )
            for m in mscc
        )
    return CCAnswer(**values)


def _service_to_json(s: ServiceUsage) -> list[Any]:
    return [
        s.rating_group,
        s.service_identifier,
        s.primary,
        [[_dt(at), secs] for at, secs in s.pieces],
        s.used,
        s.raw_cost,
        s.reserved,
        s.granted,
        _dt(s.grant_start),
        _dt(s.tariff_time_change),
    ]


def _service_from_json(d: list[Any] | dict[str, Any]) -> ServiceUsage:
    if isinstance(d, dict):  # written by an earlier version
        d = [
            d["rating_group"],
            d["service_identifier"],
            d["primary"],
            d["pieces"],
            d["used"],
            d["raw_cost"],
            d["reserved"],
            d["granted"],
            d["grant_start"],
            d["tariff_time_change"],
        ]
    rg, si, primary, pieces, used, raw_cost, reserved, granted, start, ttc = d
    return ServiceUsage(
        rating_group=rg,
        service_identifier=si,
        primary=primary,
        pieces=tuple((_undt(at), secs) for at, secs in pieces),  # type: ignore[misc]
        used=used,
        raw_cost=raw_cost,
        reserved=reserved,
        granted=granted,
        grant_start=_undt(start),
        tariff_time_change=_undt(ttc),
    )


@functools.lru_cache(maxsize=1024)
def _tariff_json(t: rating.Tariff) -> str:
    return json.dumps({f.name: getattr(t, f.name) for f in dataclasses.fields(t)})


def session_to_json(s: LiveSession) -> str:
    """The session's charging state (credit_session.charging_state), as JSON text."""
    rest = json.dumps(
        {
            "account_number": s.account_number,
            "services": [_service_to_json(v) for v in s.services.values()],
            "call_id": s.call_id,
            "connect_delay": s.connect_delay,
            "final_units": s.final_units,
            "uses_mscc": s.uses_mscc,
        },
        separators=(",", ":"),
    )
    return '{"tariff":' + _tariff_json(s.tariff) + "," + rest[1:]


def session_from_row(
    *,
    session_id: str,
    account_id: int,
    calling: str,
    called: str,
    started_at: datetime,
    peer: str,
    last_request_number: int,
    expires_at: datetime,
    data: dict[str, Any],
) -> LiveSession:
    services = [_service_from_json(d) for d in data["services"]]
    return LiveSession(
        session_id=session_id,
        account_id=account_id,
        account_number=data["account_number"],
        calling=calling,
        called=called,
        tariff=rating.Tariff(**data["tariff"]),
        started_at=started_at,
        peer=peer,
        services={s.key: s for s in services},
        last_request_number=last_request_number,
        expires_at=expires_at,
        call_id=data.get("call_id", ""),
        connect_delay=data.get("connect_delay"),
        final_units=data.get("final_units", False),
        uses_mscc=data.get("uses_mscc", False),
    )
