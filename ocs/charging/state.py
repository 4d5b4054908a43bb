"""A live credit-control session as the engine keeps it, and the JSON forms in the database.

`credit_session.charging_state` holds the session's rating state (tariff, services, usage
pieces), so that another OCS process, or this one after a restart, can carry on a session it
did not start. Answers are kept apart, one row per request (`cc_answer`, see
`ocs.charging.records`), in the JSON form of `answer_to_json`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime
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

    @property
    def reserved(self) -> int:
        return sum(s.reserved for s in self.services.values())

    @property
    def used(self) -> int:
        return sum(s.used for s in self.services.values())


def _dt(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _undt(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def answer_to_json(answer: CCAnswer) -> dict[str, Any]:
    data = {
        f.name: getattr(answer, f.name)
        for f in dataclasses.fields(answer)
        if f.name not in {"mscc", "tariff_time_change", "extra"}
    }
    data["tariff_time_change"] = _dt(answer.tariff_time_change)
    data["request_type"] = int(answer.request_type)
    if answer.final_unit_action is not None:
        data["final_unit_action"] = int(answer.final_unit_action)
    if answer.mscc is not None:
        data["mscc"] = [
            {
                **{f.name: getattr(m, f.name) for f in dataclasses.fields(m)},
                "tariff_time_change": _dt(m.tariff_time_change),
                "final_unit_action": (
                    int(m.final_unit_action) if m.final_unit_action is not None else None
                ),
            }
            for m in answer.mscc
        ]
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


def _service_to_json(s: ServiceUsage) -> dict[str, Any]:
    return {
        "rating_group": s.rating_group,
        "service_identifier": s.service_identifier,
        "primary": s.primary,
        "pieces": [[_dt(at), secs] for at, secs in s.pieces],
        "used": s.used,
        "raw_cost": s.raw_cost,
        "reserved": s.reserved,
        "granted": s.granted,
        "grant_start": _dt(s.grant_start),
        "tariff_time_change": _dt(s.tariff_time_change),
    }


def _service_from_json(d: dict[str, Any]) -> ServiceUsage:
    return ServiceUsage(
        rating_group=d["rating_group"],
        service_identifier=d["service_identifier"],
        primary=d["primary"],
        pieces=tuple((datetime.fromisoformat(at), secs) for at, secs in d["pieces"]),
        used=d["used"],
        raw_cost=d["raw_cost"],
        reserved=d["reserved"],
        granted=d["granted"],
        grant_start=_undt(d["grant_start"]),
        tariff_time_change=_undt(d["tariff_time_change"]),
    )


def session_to_json(s: LiveSession) -> dict[str, Any]:
    t = s.tariff
    return {
        "account_number": s.account_number,
        "tariff": {f.name: getattr(t, f.name) for f in dataclasses.fields(t)},
        "services": [_service_to_json(v) for v in s.services.values()],
        "call_id": s.call_id,
        "connect_delay": s.connect_delay,
        "final_units": s.final_units,
        "uses_mscc": s.uses_mscc,
    }


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
