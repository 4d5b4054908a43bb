"""The IVR dialog engine: one pure state machine per incoming call.

No I/O, no clock, no asyncio. A switch adapter (our SIP stack, or later FreeSWITCH ESL /
Asterisk ARI) feeds it *events* with the current time and carries out the *commands* it
returns. Directory lookups (PIN, caller ID, DID), the destination check and credit control
are commands too, answered by events, so every branch is testable with plain function calls.

Services (PRODUCT.md, "Access services"):

* single-number access: the access number answers, asks for the PIN (``#`` ends it, or the
  maximum length, or the inter-digit timeout), announces the remaining credit (money and
  the minutes it buys), asks for the destination, tells barred / unaffordable destinations
  and asks again, connects, and charges the call to the PIN's account;
* one-step access: a registered caller ID calling one of its account's DIDs is connected
  straight to the mapped number, without any prompt.

Charging follows RFC 4006 as a switch would: CCR-I when the far end answers (with the
connect delay), CCR-U before the grant is used up, CCR-T with the exact seconds used at
hang-up. A grant flagged final (Final-Unit-Indication TERMINATE) arms a cut-off timer: when it
fires the far end is released, the caller hears "credit exhausted" and is hung up.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from ivr_bridge import speech
from ivr_bridge.lockout import LockoutTracker

# --------------------------------------------------------------------------- configuration


@dataclass(frozen=True, slots=True)
class DialogConfig:
    access_number: str = "6000"
    default_language: str = "FR"
    currency: str = "Euros"
    pin_max_digits: int = 8
    destination_max_digits: int = 20
    max_pin_tries: int = 3
    max_destination_tries: int = 3
    first_digit_timeout: float = 8.0  # after the prompt ends, waiting for the first digit
    inter_digit_timeout: float = 4.0  # between digits (ends the destination number)
    update_margin: float = 5.0  # send CCR-U this long before the grant is used up
    no_answer_timeout: float = 60.0  # outgoing leg ringing without answer
    charging_timeout: float = 10.0  # no answer from the OCS


# --------------------------------------------------------------------------- data


@dataclass(frozen=True, slots=True)
class AccountInfo:
    """What the engine needs to know about an account (filled in by the adapter)."""

    id: int
    number: str
    language: str
    available_units: int
    credit_money: Decimal  # available units in money
    credit_minutes: int | None = None  # whole minutes the credit buys (default tariff)


class DestinationStatus(enum.Enum):
    OK = "ok"
    BARRED = "barred"
    NO_CREDIT = "no_credit"
    INVALID = "invalid"


class SubscriberKind(enum.Enum):
    ACCOUNT = "account"  # Subscription-Id END_USER_PRIVATE = account number (PIN access)
    E164 = "e164"  # Subscription-Id END_USER_E164 = caller number (one-step)


class EndReason(enum.Enum):
    NORMAL = "normal"
    CALLER_HANGUP = "caller_hangup"
    CALLEE_HANGUP = "callee_hangup"
    CREDIT_EXHAUSTED = "credit_exhausted"
    PIN_FAILED = "pin_failed"
    LOCKED_OUT = "locked_out"
    NOT_FOUND = "not_found"
    NO_CREDIT = "no_credit"
    CALL_FAILED = "call_failed"
    CHARGING_FAILED = "charging_failed"
    NO_DESTINATION = "no_destination"
    ABORTED = "aborted"


# --------------------------------------------------------------------------- events


@dataclass(frozen=True, slots=True)
class CallOffered:
    calling: str
    called: str


@dataclass(frozen=True, slots=True)
class DigitReceived:
    digit: str  # "0"-"9", "*", "#", "A"-"D"


@dataclass(frozen=True, slots=True)
class PromptFinished:
    play_id: int


@dataclass(frozen=True, slots=True)
class TimerExpired:
    name: str


@dataclass(frozen=True, slots=True)
class PinLookedUp:
    account: AccountInfo | None


@dataclass(frozen=True, slots=True)
class CallerLookedUp:
    account: AccountInfo | None


@dataclass(frozen=True, slots=True)
class DidLookedUp:
    forward_to: str | None


@dataclass(frozen=True, slots=True)
class DestinationChecked:
    status: DestinationStatus
    affordable_seconds: int | None = None


@dataclass(frozen=True, slots=True)
class FarEndAnswered:
    connect_delay: float  # seconds from INVITE to answer


@dataclass(frozen=True, slots=True)
class FarEndFailed:
    reason: str = ""
    status: int = 0


@dataclass(frozen=True, slots=True)
class CallerHungUp:
    pass


@dataclass(frozen=True, slots=True)
class CalleeHungUp:
    pass


@dataclass(frozen=True, slots=True)
class ChargingAnswered:
    """A CCA for the last Charge* command. `granted` is CC-Time; `final` is FUI TERMINATE."""

    ok: bool
    granted: int = 0
    final: bool = False
    result_code: int = 2001


@dataclass(frozen=True, slots=True)
class ChargingAborted:
    """The OCS ended the session (Diameter ASR, e.g. the operator killed the call)."""


@dataclass(frozen=True, slots=True)
class ReauthRequested:
    """The OCS asks for re-authorisation (Diameter RAR, e.g. after a top-up)."""


Event = (
    CallOffered
    | DigitReceived
    | PromptFinished
    | TimerExpired
    | PinLookedUp
    | CallerLookedUp
    | DidLookedUp
    | DestinationChecked
    | FarEndAnswered
    | FarEndFailed
    | CallerHungUp
    | CalleeHungUp
    | ChargingAnswered
    | ChargingAborted
    | ReauthRequested
)

# --------------------------------------------------------------------------- commands


@dataclass(frozen=True, slots=True)
class Answer:
    pass


@dataclass(frozen=True, slots=True)
class Reject:
    status: int
    reason: str


@dataclass(frozen=True, slots=True)
class Play:
    """Play prompt files in sequence to the caller; `PromptFinished(play_id)` when done."""

    play_id: int
    language: str
    prompts: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class StopPlay:
    pass


@dataclass(frozen=True, slots=True)
class Hangup:
    """Release the caller leg (BYE, or a final response if it was never answered)."""

    reason: EndReason


@dataclass(frozen=True, slots=True)
class StartTimer:
    name: str
    seconds: float


@dataclass(frozen=True, slots=True)
class CancelTimer:
    name: str


@dataclass(frozen=True, slots=True)
class LookupPin:
    pin: str


@dataclass(frozen=True, slots=True)
class LookupCaller:
    number: str


@dataclass(frozen=True, slots=True)
class LookupDid:
    account_id: int
    did: str


@dataclass(frozen=True, slots=True)
class CheckDestination:
    account: AccountInfo
    destination: str
    subscriber: SubscriberKind
    calling: str


@dataclass(frozen=True, slots=True)
class Connect:
    destination: str


@dataclass(frozen=True, slots=True)
class Bridge:
    """Relay media between caller and far end."""


@dataclass(frozen=True, slots=True)
class ReleaseCallee:
    """Cancel or hang up the outgoing leg."""


@dataclass(frozen=True, slots=True)
class ChargeStart:
    account: AccountInfo
    subscriber: SubscriberKind
    calling: str
    destination: str
    connect_delay: int


@dataclass(frozen=True, slots=True)
class ChargeUpdate:
    used: int


@dataclass(frozen=True, slots=True)
class ChargeStop:
    used: int


@dataclass(frozen=True, slots=True)
class Finished:
    """The dialog is over; the adapter may drop it."""

    reason: EndReason


Command = (
    Answer
    | Reject
    | Play
    | StopPlay
    | Hangup
    | StartTimer
    | CancelTimer
    | LookupPin
    | LookupCaller
    | LookupDid
    | CheckDestination
    | Connect
    | Bridge
    | ReleaseCallee
    | ChargeStart
    | ChargeUpdate
    | ChargeStop
    | Finished
)

# --------------------------------------------------------------------------- prompts

# Prompt names (files under ivr_bridge/prompts/<lang>/<name>.ul). Number words come from
# ivr_bridge.speech.
P_WELCOME = "welcome"
P_ENTER_PIN = "enter_pin"
P_WRONG_PIN = "wrong_pin"
P_TOO_MANY = "too_many_attempts"
P_LOCKED = "locked_out"
P_YOUR_CREDIT = "your_credit_is"
P_ENTER_DEST = "enter_destination"
P_BARRED = "destination_barred"
P_NO_CREDIT = "no_credit"
P_INSUFFICIENT = "insufficient_credit"
P_INVALID = "invalid_number"
P_CONNECTING = "connecting"
P_CALL_FAILED = "call_failed"
P_EXHAUSTED = "credit_exhausted"
P_GOODBYE = "goodbye"
P_SERVICE_ERROR = "service_unavailable"

ALL_PROMPTS = (
    P_WELCOME,
    P_ENTER_PIN,
    P_WRONG_PIN,
    P_TOO_MANY,
    P_LOCKED,
    P_YOUR_CREDIT,
    P_ENTER_DEST,
    P_BARRED,
    P_NO_CREDIT,
    P_INSUFFICIENT,
    P_INVALID,
    P_CONNECTING,
    P_CALL_FAILED,
    P_EXHAUSTED,
    P_GOODBYE,
    P_SERVICE_ERROR,
)

# Timer names
T_DIGIT = "digit"
T_QUOTA = "quota"  # CCR-U due
T_CUTOFF = "cutoff"  # final units used up
T_RING = "ring"  # outgoing leg not answered
T_CHARGING = "charging"  # OCS did not answer

# --------------------------------------------------------------------------- engine


class State(enum.Enum):
    IDLE = "idle"
    LOOKUP_CALLER = "lookup_caller"
    LOOKUP_DID = "lookup_did"
    PIN = "pin"
    LOOKUP_PIN = "lookup_pin"
    DESTINATION = "destination"
    CHECK_DESTINATION = "check_destination"
    CONNECTING = "connecting"
    STARTING_CHARGE = "starting_charge"
    CONNECTED = "connected"
    CLOSING = "closing"  # final prompt playing, then hang up
    ENDED = "ended"


@dataclass(slots=True)
class _Collector:
    digits: str = ""
    active: bool = False  # collecting (prompt may still be playing: barge-in)


@dataclass(slots=True)
class Dialog:
    """One call. `handle(event, now)` returns the commands to carry out, in order."""

    config: DialogConfig
    lockout: LockoutTracker | None = None
    state: State = State.IDLE
    calling: str = ""
    called: str = ""
    one_step: bool = False
    language: str = ""
    account: AccountInfo | None = None
    destination: str = ""
    pin_tries: int = 0
    destination_tries: int = 0
    end_reason: EndReason | None = None
    answered: bool = False
    connect_delay: int = 0
    # charging bookkeeping
    answered_at: float | None = None
    reported_until: float | None = None  # time up to which usage has been reported
    charge_pending: bool = False
    final_units: bool = False
    charged_seconds: int = 0  # total seconds reported (CCR-U + CCR-T)
    _play_seq: int = 0
    _playing: int | None = None
    _collector: _Collector = field(default_factory=_Collector)

    # ----------------------------------------------------------------- helpers

    def _play(self, *prompts: str) -> Play:
        self._play_seq += 1
        self._playing = self._play_seq
        return Play(self._play_seq, self.language or self.config.default_language, prompts)

    def _close(self, reason: EndReason, *prompts: str) -> list[Command]:
        """Play the final prompts (if any) then hang up the caller."""
        self.end_reason = reason
        self._collector = _Collector()
        out: list[Command] = [CancelTimer(T_DIGIT)]
        if self._playing is not None:
            out.append(StopPlay())
        if prompts and self.answered:
            self.state = State.CLOSING
            out.append(self._play(*prompts))
            return out
        return out + self._finish(reason)

    def _finish(self, reason: EndReason) -> list[Command]:
        self.state = State.ENDED
        self.end_reason = self.end_reason or reason
        self._playing = None
        if not self.answered:
            status, text = {
                EndReason.NOT_FOUND: (404, "Not Found"),
                EndReason.CALL_FAILED: (480, "Temporarily Unavailable"),
                EndReason.NO_CREDIT: (402, "Payment Required"),
                EndReason.CHARGING_FAILED: (503, "Service Unavailable"),
                EndReason.LOCKED_OUT: (403, "Forbidden"),
            }.get(reason, (487, "Request Terminated"))
            return [Reject(status, text), Finished(self.end_reason)]
        return [Hangup(self.end_reason), Finished(self.end_reason)]

    def _collect(self, *prompts: str) -> list[Command]:
        """Play a question and collect digits (barge-in allowed)."""
        self._collector = _Collector(active=True)
        return [CancelTimer(T_DIGIT), self._play(*prompts)]

    def _credit_words(self, account: AccountInfo) -> tuple[str, ...]:
        return speech.credit_announcement(
            self.language, account.credit_money, self.config.currency, account.credit_minutes
        )

    def _stop_charging(self, now: float) -> list[Command]:
        """CCR-T with the seconds not yet reported; cancels charging timers."""
        out: list[Command] = [CancelTimer(T_QUOTA), CancelTimer(T_CUTOFF), CancelTimer(T_CHARGING)]
        if self.answered_at is None:
            return out
        # Exact duration: total whole seconds since answer minus what CCR-Us already reported.
        total = max(0, round(now - self.answered_at))
        used = max(0, total - self.charged_seconds)
        self.charged_seconds += used
        self.answered_at = None
        out.append(ChargeStop(used))
        return out

    # ----------------------------------------------------------------- entry point

    def handle(self, event: Event, now: float) -> list[Command]:
        if self.state is State.ENDED:
            return []
        if isinstance(event, CallerHungUp):
            return self._on_caller_hangup(now)
        if isinstance(event, PromptFinished):
            return self._on_prompt_finished(event)
        handler = _HANDLERS.get((self.state, type(event)))
        if handler is None:
            return []  # late or irrelevant event (e.g. a digit while connecting)
        return handler(self, event, now)

    # ----------------------------------------------------------------- offered

    def _on_offered(self, event: CallOffered, now: float) -> list[Command]:
        self.calling = event.calling
        self.called = event.called
        self.language = self.config.default_language
        if event.called == self.config.access_number:
            self.answered = True
            if self.lockout is not None and self.lockout.is_locked(event.calling):
                self.state = State.CLOSING
                self.end_reason = EndReason.LOCKED_OUT
                return [Answer(), self._play(P_LOCKED, P_GOODBYE)]
            self.state = State.PIN
            return [Answer(), *self._collect(P_WELCOME, P_ENTER_PIN)]
        self.one_step = True
        self.state = State.LOOKUP_CALLER
        return [LookupCaller(event.calling)]

    def _on_caller(self, event: CallerLookedUp, now: float) -> list[Command]:
        if event.account is None:
            return self._finish(EndReason.NOT_FOUND)
        self.account = event.account
        self.language = event.account.language or self.config.default_language
        self.state = State.LOOKUP_DID
        return [LookupDid(event.account.id, self.called)]

    def _on_did(self, event: DidLookedUp, now: float) -> list[Command]:
        if event.forward_to is None or self.account is None:
            return self._finish(EndReason.NOT_FOUND)
        self.destination = event.forward_to
        self.state = State.CHECK_DESTINATION
        return [CheckDestination(self.account, self.destination, SubscriberKind.E164, self.calling)]

    # ----------------------------------------------------------------- prompts & digits

    def _on_prompt_finished(self, event: PromptFinished) -> list[Command]:
        if event.play_id != self._playing:
            return []
        self._playing = None
        if self.state is State.CLOSING:
            return self._finish(self.end_reason or EndReason.NORMAL)
        if self._collector.active and self.state in (State.PIN, State.DESTINATION):
            timeout = (
                self.config.inter_digit_timeout
                if self._collector.digits
                else self.config.first_digit_timeout
            )
            return [StartTimer(T_DIGIT, timeout)]
        return []

    def _on_digit(self, event: DigitReceived, now: float) -> list[Command]:
        if not self._collector.active:
            return []
        out: list[Command] = []
        if self._playing is not None:
            out.append(StopPlay())  # barge-in
            self._playing = None
        out.append(CancelTimer(T_DIGIT))
        if event.digit == "#":
            return out + self._digits_done()
        if not event.digit.isdigit():
            out.append(StartTimer(T_DIGIT, self.config.inter_digit_timeout))
            return out  # "*" and A-D are ignored
        self._collector.digits += event.digit
        limit = (
            self.config.pin_max_digits
            if self.state is State.PIN
            else self.config.destination_max_digits
        )
        if len(self._collector.digits) >= limit:
            return out + self._digits_done()
        out.append(StartTimer(T_DIGIT, self.config.inter_digit_timeout))
        return out

    def _on_digit_timeout(self, event: TimerExpired, now: float) -> list[Command]:
        if event.name != T_DIGIT or not self._collector.active:
            return []
        return self._digits_done()

    def _digits_done(self) -> list[Command]:
        digits = self._collector.digits
        self._collector = _Collector()
        if self.state is State.PIN:
            if not digits:
                return self._pin_failed()
            self.state = State.LOOKUP_PIN
            return [LookupPin(digits)]
        if not digits:
            return self._destination_retry(P_ENTER_DEST)
        if self.account is None:  # pragma: no cover - cannot happen in DESTINATION
            return self._close(EndReason.CHARGING_FAILED, P_SERVICE_ERROR)
        self.destination = digits
        self.state = State.CHECK_DESTINATION
        return [CheckDestination(self.account, digits, SubscriberKind.ACCOUNT, self.calling)]

    # ----------------------------------------------------------------- PIN

    def _pin_failed(self) -> list[Command]:
        self.pin_tries += 1
        if self.lockout is not None and self.lockout.record_failure(self.calling):
            self.state = State.PIN
            return self._close(EndReason.LOCKED_OUT, P_WRONG_PIN, P_LOCKED, P_GOODBYE)
        if self.pin_tries >= self.config.max_pin_tries:
            self.state = State.PIN
            return self._close(EndReason.PIN_FAILED, P_WRONG_PIN, P_TOO_MANY, P_GOODBYE)
        self.state = State.PIN
        return self._collect(P_WRONG_PIN, P_ENTER_PIN)

    def _on_pin(self, event: PinLookedUp, now: float) -> list[Command]:
        if event.account is None:
            return self._pin_failed()
        if self.lockout is not None:
            self.lockout.record_success(self.calling)
        self.account = event.account
        self.language = event.account.language or self.config.default_language
        self.state = State.DESTINATION
        if event.account.available_units <= 0:
            return self._close(
                EndReason.NO_CREDIT, *self._credit_words(event.account), P_NO_CREDIT, P_GOODBYE
            )
        return self._collect(*self._credit_words(event.account), P_ENTER_DEST)

    # ----------------------------------------------------------------- destination

    def _destination_retry(self, *prompts: str) -> list[Command]:
        self.destination_tries += 1
        self.state = State.DESTINATION
        if self.destination_tries >= self.config.max_destination_tries:
            return self._close(EndReason.NO_DESTINATION, *prompts[:-1], P_GOODBYE)
        return self._collect(*prompts)

    def _on_destination(self, event: DestinationChecked, now: float) -> list[Command]:
        if event.status is DestinationStatus.OK:
            if event.affordable_seconds is not None and event.affordable_seconds <= 0:
                return self._destination_refused(P_INSUFFICIENT)
            self.state = State.CONNECTING
            out: list[Command] = [
                Connect(self.destination),
                StartTimer(T_RING, self.config.no_answer_timeout),
            ]
            if not self.one_step:
                out.insert(0, self._play(P_CONNECTING))
            return out
        prompt = {
            DestinationStatus.BARRED: P_BARRED,
            DestinationStatus.NO_CREDIT: P_INSUFFICIENT,
            DestinationStatus.INVALID: P_INVALID,
        }[event.status]
        return self._destination_refused(prompt)

    def _destination_refused(self, prompt: str) -> list[Command]:
        if self.one_step:
            # No menu in one-step: answer, tell why, hang up.
            self.answered = True
            reason = EndReason.CALL_FAILED if prompt != P_INSUFFICIENT else EndReason.NO_CREDIT
            self.end_reason = reason
            self.state = State.CLOSING
            return [Answer(), self._play(prompt, P_GOODBYE)]
        return self._destination_retry(prompt, P_ENTER_DEST)

    # ----------------------------------------------------------------- outgoing leg

    def _on_far_answered(self, event: FarEndAnswered, now: float) -> list[Command]:
        if self.account is None:  # pragma: no cover
            return []
        self.connect_delay = max(0, round(event.connect_delay))
        self.answered_at = now
        self.reported_until = now
        self.state = State.STARTING_CHARGE
        self.charge_pending = True
        out: list[Command] = [CancelTimer(T_RING)]
        if self._playing is not None:
            out.append(StopPlay())
            self._playing = None
        out += [
            ChargeStart(
                self.account,
                SubscriberKind.E164 if self.one_step else SubscriberKind.ACCOUNT,
                self.calling,
                self.destination,
                self.connect_delay,
            ),
            StartTimer(T_CHARGING, self.config.charging_timeout),
        ]
        return out

    def _on_far_failed(self, event: FarEndFailed, now: float) -> list[Command]:
        out: list[Command] = [CancelTimer(T_RING)]
        if self.one_step:
            return out + self._finish(EndReason.CALL_FAILED)
        return out + self._close(EndReason.CALL_FAILED, P_CALL_FAILED, P_GOODBYE)

    def _on_ring_timeout(self, event: TimerExpired, now: float) -> list[Command]:
        if event.name != T_RING:
            return []
        out: list[Command] = [ReleaseCallee()]
        if self.one_step:
            return out + self._finish(EndReason.CALL_FAILED)
        return out + self._close(EndReason.CALL_FAILED, P_CALL_FAILED, P_GOODBYE)

    # ----------------------------------------------------------------- charging

    def _on_charge_started(self, event: ChargingAnswered, now: float) -> list[Command]:
        self.charge_pending = False
        out: list[Command] = [CancelTimer(T_CHARGING)]
        if not event.ok or event.granted <= 0:
            # Refused at CCR-I: no bridge; the far end is released; tell the caller.
            # A CCR-T with 0 used closes the session on the OCS (as Kamailio does).
            out += [ReleaseCallee(), *self._stop_charging(self.answered_at or now)]
            if event.result_code == 4012 or event.ok:
                return out + self._answer_and_close(EndReason.NO_CREDIT, P_NO_CREDIT)
            return out + self._answer_and_close(EndReason.CHARGING_FAILED, P_SERVICE_ERROR)
        self.state = State.CONNECTED
        if self.one_step and not self.answered:
            self.answered = True
            out.append(Answer())
        out.append(Bridge())
        out += self._arm_grant(event, now)
        return out

    def _answer_and_close(self, reason: EndReason, *prompts: str) -> list[Command]:
        out: list[Command] = []
        if not self.answered:
            self.answered = True
            out.append(Answer())
        if prompts[-1:] != (P_GOODBYE,):
            prompts = (*prompts, P_GOODBYE)
        return out + self._close(reason, *prompts)

    def _arm_grant(self, event: ChargingAnswered, now: float) -> list[Command]:
        self.final_units = event.final
        out: list[Command] = [CancelTimer(T_QUOTA), CancelTimer(T_CUTOFF)]
        if event.final:
            return [*out, StartTimer(T_CUTOFF, float(event.granted))]
        margin = min(self.config.update_margin, event.granted / 2)
        return [*out, StartTimer(T_QUOTA, max(0.5, event.granted - margin))]

    def _on_quota_timer(self, event: TimerExpired, now: float) -> list[Command]:
        if event.name == T_CUTOFF:
            return self._cut_off(now)
        if event.name == T_CHARGING:
            return self._charging_lost(now)
        if event.name != T_QUOTA:
            return []
        return self._report_usage(now)

    def _on_reauth(self, event: ReauthRequested, now: float) -> list[Command]:
        if self.charge_pending:
            return []  # a CCR is in flight; its answer carries the fresh grant
        return self._report_usage(now)

    def _on_aborted(self, event: ChargingAborted, now: float) -> list[Command]:
        out: list[Command] = [ReleaseCallee(), *self._stop_charging(now)]
        return out + self._answer_and_close(EndReason.ABORTED, P_GOODBYE)

    def _report_usage(self, now: float) -> list[Command]:
        if self.answered_at is None:
            return []
        total = max(0, round(now - self.answered_at))
        used = max(0, total - self.charged_seconds)
        self.charged_seconds += used
        self.reported_until = now
        self.charge_pending = True
        return [ChargeUpdate(used), StartTimer(T_CHARGING, self.config.charging_timeout)]

    def _on_charge_updated(self, event: ChargingAnswered, now: float) -> list[Command]:
        self.charge_pending = False
        out: list[Command] = [CancelTimer(T_CHARGING)]
        if not event.ok or event.granted <= 0:
            # No more credit: behave as if the final units were used now.
            return out + self._cut_off(now)
        return out + self._arm_grant(event, now)

    def _cut_off(self, now: float) -> list[Command]:
        out: list[Command] = [ReleaseCallee(), *self._stop_charging(now)]
        return out + self._close(EndReason.CREDIT_EXHAUSTED, P_EXHAUSTED, P_GOODBYE)

    def _charging_lost(self, now: float) -> list[Command]:
        out: list[Command] = [ReleaseCallee(), *self._stop_charging(now)]
        return out + self._answer_and_close(EndReason.CHARGING_FAILED, P_SERVICE_ERROR)

    # ----------------------------------------------------------------- hang-ups

    def _on_caller_hangup(self, now: float) -> list[Command]:
        out: list[Command] = [CancelTimer(T_DIGIT), CancelTimer(T_RING)]
        if self._playing is not None:
            out.append(StopPlay())
            self._playing = None
        if self.state in (
            State.CONNECTING,
            State.STARTING_CHARGE,
            State.CONNECTED,
        ):
            out.append(ReleaseCallee())
        out += self._stop_charging(now)
        self.answered = False  # nothing left to hang up
        self.end_reason = self.end_reason or EndReason.CALLER_HANGUP
        self.state = State.ENDED
        return [*out, Finished(self.end_reason)]

    def _on_callee_hangup(self, event: CalleeHungUp, now: float) -> list[Command]:
        out = self._stop_charging(now)
        self.end_reason = EndReason.CALLEE_HANGUP
        return out + self._finish(EndReason.CALLEE_HANGUP)


_Handler = Callable[[Dialog, Any, float], list[Command]]
_HANDLERS: dict[tuple[State, type], _Handler] = {}


def _on(state: State, event_type: type, fn: _Handler) -> None:
    _HANDLERS[(state, event_type)] = fn


_on(State.IDLE, CallOffered, Dialog._on_offered)
_on(State.LOOKUP_CALLER, CallerLookedUp, Dialog._on_caller)
_on(State.LOOKUP_DID, DidLookedUp, Dialog._on_did)
_on(State.PIN, DigitReceived, Dialog._on_digit)
_on(State.PIN, TimerExpired, Dialog._on_digit_timeout)
_on(State.LOOKUP_PIN, PinLookedUp, Dialog._on_pin)
_on(State.DESTINATION, DigitReceived, Dialog._on_digit)
_on(State.DESTINATION, TimerExpired, Dialog._on_digit_timeout)
_on(State.CHECK_DESTINATION, DestinationChecked, Dialog._on_destination)
_on(State.CONNECTING, FarEndAnswered, Dialog._on_far_answered)
_on(State.CONNECTING, FarEndFailed, Dialog._on_far_failed)
_on(State.CONNECTING, TimerExpired, Dialog._on_ring_timeout)
_on(State.STARTING_CHARGE, ChargingAnswered, Dialog._on_charge_started)
_on(State.STARTING_CHARGE, TimerExpired, Dialog._on_quota_timer)
_on(State.STARTING_CHARGE, CalleeHungUp, Dialog._on_callee_hangup)
_on(State.CONNECTED, ChargingAnswered, Dialog._on_charge_updated)
_on(State.CONNECTED, TimerExpired, Dialog._on_quota_timer)
_on(State.CONNECTED, CalleeHungUp, Dialog._on_callee_hangup)
_on(State.CONNECTED, ReauthRequested, Dialog._on_reauth)
_on(State.CONNECTED, ChargingAborted, Dialog._on_aborted)
_on(State.STARTING_CHARGE, ChargingAborted, Dialog._on_aborted)
