"""The service log: one structured line per dialog step of a call. Pure.

A *step* is one event handled by the dialog and the commands it produced. `step_line`
turns it into a JSON-ready dict: what happened (`event`), what the IVR did (`actions`:
prompts played, look-ups, the number dialled, CCRs and grants, the end reason) and the
state reached. Secrets never appear: a PIN or a voucher code is logged as one ``*`` per
digit, and digits the caller sends to the destination after connecting (a bank PIN, a
voicemail code) as ``*``.

Steps that only move digit or charging timers (each key press of a PIN, for instance)
produce no line: the entered number is logged once, when it is complete.
"""

from __future__ import annotations

from typing import Any

from ivr_bridge import dialog as d

Record = dict[str, Any]


def _mask(text: str) -> str:
    return "*" * len(text)


def describe_event(event: d.Event) -> Record:
    """The event as a small dict (`type` plus its relevant fields)."""
    if isinstance(event, d.CallOffered):
        return {"type": "offered", "calling": event.calling, "called": event.called}
    if isinstance(event, d.DigitReceived):
        return {"type": "digit"}  # the value is only logged where it is not secret
    if isinstance(event, d.PromptFinished):
        return {"type": "prompt_done"}
    if isinstance(event, d.TimerExpired):
        return {"type": "timer", "name": event.name}
    if isinstance(event, d.PinLookedUp | d.CallerLookedUp | d.AccountRefreshed):
        kind = {
            d.PinLookedUp: "pin_result",
            d.CallerLookedUp: "caller_result",
            d.AccountRefreshed: "account_refreshed",
        }[type(event)]
        account = event.account
        return {
            "type": kind,
            "account": account.number if account else None,
            **({"available": account.available_units} if account else {}),
        }
    if isinstance(event, d.VoucherRedeemed):
        account = event.account
        return {
            "type": "voucher_result",
            "result": event.result.value,
            **({"account": account.number, "available": account.available_units}
               if account else {}),
        }  # fmt: skip
    if isinstance(event, d.DidLookedUp):
        return {"type": "did_result", "forward_to": event.forward_to}
    if isinstance(event, d.LockoutChecked):
        return {"type": "lockout", "locked": event.locked}
    if isinstance(event, d.FailureRecorded):
        return {"type": "failure_recorded", "locked": event.locked}
    if isinstance(event, d.DestinationChecked):
        return {
            "type": "destination_checked",
            "status": event.status.value,
            "affordable_seconds": event.affordable_seconds,
        }
    if isinstance(event, d.FarEndProgress):
        return {"type": "progress", "status": event.status, "early_media": event.early_media}
    if isinstance(event, d.FarEndAnswered):
        return {"type": "answered", "connect_delay": round(event.connect_delay, 3)}
    if isinstance(event, d.FarEndFailed):
        return {
            "type": "far_end_failed",
            "status": event.status,
            "reason": event.reason,
            **({"failure": event.failure.value} if event.failure else {}),
        }
    if isinstance(event, d.ChargingAnswered):
        return {
            "type": "grant",
            "ok": event.ok,
            "granted": event.granted,
            "final": event.final,
            "result_code": event.result_code,
        }
    names = {
        d.CallerHungUp: "caller_hangup",
        d.CalleeHungUp: "callee_hangup",
        d.ChargingAborted: "asr",
        d.ReauthRequested: "rar",
    }
    return {"type": names.get(type(event), type(event).__name__)}


def describe_command(command: d.Command) -> Record | None:
    """The command as a dict, or None for bookkeeping not worth a log entry (timers)."""
    c = command
    if isinstance(c, d.StartTimer | d.CancelTimer | d.StopPlay):
        return None
    if isinstance(c, d.Play):
        out: Record = {"do": "play", "prompts": list(c.prompts), "language": c.language}
        if c.leg is d.Leg.CALLEE:
            out["leg"] = "callee"
        if c.loop:
            out["loop"] = True
        return out
    if isinstance(c, d.LookupPin):
        return {"do": "lookup_pin", "pin": _mask(c.pin)}
    if isinstance(c, d.LookupCaller):
        return {"do": "lookup_caller", "number": c.number}
    if isinstance(c, d.LookupDid):
        return {"do": "lookup_did", "did": c.did}
    if isinstance(c, d.CheckLockout):
        return {"do": "check_lockout", "caller": c.caller}
    if isinstance(c, d.RecordFailure):
        return {"do": "record_failure", "caller": c.caller, "kind": c.kind}
    if isinstance(c, d.RedeemVoucher):
        return {"do": "redeem_voucher", "code": _mask(c.code), "account": c.account.number}
    if isinstance(c, d.RefreshAccount):
        return {"do": "refresh_account"}
    if isinstance(c, d.CheckDestination):
        return {"do": "check_destination", "dialled": c.destination}
    if isinstance(c, d.Connect):
        return {"do": "connect", "destination": c.destination}
    if isinstance(c, d.RelayDigit):
        return {"do": "relay_dtmf", "digit": "*"}
    if isinstance(c, d.ChargeStart):
        return {
            "do": "ccr_initial",
            "account": c.account.number,
            "subscriber": c.subscriber.value,
            "destination": c.destination,
            "connect_delay": c.connect_delay,
        }
    if isinstance(c, d.ChargeUpdate):
        return {"do": "ccr_update", "used": c.used}
    if isinstance(c, d.ChargeStop):
        return {"do": "ccr_terminate", "used": c.used, "termination_cause": int(c.cause)}
    if isinstance(c, d.Reject):
        return {"do": "reject", "status": c.status}
    if isinstance(c, d.Hangup):
        return {"do": "hangup", "reason": c.reason.value}
    if isinstance(c, d.Finished):
        return {"do": "end", "reason": c.reason.value}
    if isinstance(c, d.Ringing):
        return {"do": "ringing", "early_media": c.early_media}
    names = {
        d.Answer: "answer",
        d.EarlyMedia: "early_media",
        d.Bridge: "bridge",
        d.Unbridge: "unbridge",
        d.ReleaseCallee: "release_callee",
    }
    return {"do": names.get(type(c), type(c).__name__)}


def step_line(
    step: int, event: d.Event, commands: list[d.Command], state: d.State
) -> Record | None:
    """One log line for one dialog step, or None when the step did nothing notable."""
    actions = [a for a in (describe_command(c) for c in commands) if a is not None]
    quiet_event = isinstance(event, d.DigitReceived | d.PromptFinished | d.TimerExpired)
    if quiet_event and not actions:
        return None
    return {"step": step, "event": describe_event(event), "actions": actions, "state": state.value}
