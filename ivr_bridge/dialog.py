"""The IVR dialog engine: one pure state machine per incoming call.

No I/O, no clock, no asyncio. A switch adapter (our SIP stack, or later FreeSWITCH ESL /
Asterisk ARI) feeds it *events* with the current time and carries out the *commands* it
returns. Directory lookups (PIN, caller ID, DID), the lockout store, the destination check
and credit control are commands too, answered by events, so every branch is testable with
plain function calls.

Services (PRODUCT.md, "Access services"):

* single-number access: the access number answers. A caller ID registered on an account is
  recognised and skips the PIN (unless the operator or the account asks for the PIN as
  well, against spoofed caller IDs). Otherwise an optional language menu, then the PIN
  (failures recorded in the lockout store, shared by every process), the remaining credit,
  the destination; barred / unaffordable destinations are told and asked again; "you have
  N minutes for this call" at that destination's tariff; connect with ringback or the
  destination's early media; after the destination hangs up the caller may dial again
  (star then hash redials the last number). Star then two, where a destination is asked
  (and offered when the credit is short), recharges with a voucher: the code is redeemed
  by the platform's one redemption rule, a wrong code counts in the lockout store like a
  wrong PIN, the new credit is announced;
* one-step access: a registered caller ID calling one of its account's DIDs is connected
  straight to the mapped number, without any prompt; the destination's 180 / 183 are
  relayed.

Charging follows RFC 4006 as a switch would: CCR-I when the far end answers (with the
connect delay), CCR-U before the grant is used up, CCR-T with the exact seconds used at
hang-up and the RFC 6733 Termination-Cause of the end. A grant flagged final
(Final-Unit-Indication TERMINATE) arms a warning (tone and/or prompt, `warning_seconds`
before the end) and a cut-off timer: at the cut the conversation stops, both parties hear
"credit exhausted", then both legs are released.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from ivr_bridge import speech

# --------------------------------------------------------------------------- configuration


@dataclass(frozen=True, slots=True)
class DialogConfig:
    access_number: str = "6000"
    default_language: str = "FR"
    languages: tuple[str, ...] = speech.LANGUAGES  # language menu: key n = languages[n-1]
    language_menu: bool = False
    currency: str = "Euros"
    pin_max_digits: int = 8
    destination_max_digits: int = 20
    max_pin_tries: int = 3
    max_destination_tries: int = 3
    first_digit_timeout: float = 8.0  # after the prompt ends, waiting for the first digit
    inter_digit_timeout: float = 4.0  # between digits (ends the destination number)
    menu_timeout: float = 3.0  # language menu: after the options, waiting for the key
    update_margin: float = 5.0  # send CCR-U this long before the grant is used up
    no_answer_timeout: float = 60.0  # outgoing leg ringing without answer
    charging_timeout: float = 10.0  # no answer from the OCS
    one_step_access: bool = True  # a registered caller ID on the access number skips the PIN
    caller_pin_required: bool = False  # ... unless this (operator-wide anti-spoofing) is set
    warning_seconds: int = 30  # warn this long before final units end (0: no warning)
    warning_tone: bool = True
    warning_prompt: bool = True
    another_call: bool = True  # after the destination hangs up, offer another call
    # Voucher codes are 16 digits ("#" ends); the cap only bounds what is collected, and is
    # above 16 so the "#" the caller types after the code is never left over.
    voucher_max_digits: int = 20
    max_voucher_tries: int = 3


# --------------------------------------------------------------------------- data


@dataclass(frozen=True, slots=True)
class AccountInfo:
    """What the engine needs to know about an account (filled in by the adapter)."""

    id: int
    number: str
    language: str
    available_units: int
    credit_money: Decimal  # available units in money
    pin_required: bool = False  # ask the PIN even when the caller ID is recognised
    last_dialed: str = ""  # for the redial key


class DestinationStatus(enum.Enum):
    OK = "ok"
    BARRED = "barred"
    NO_CREDIT = "no_credit"
    INVALID = "invalid"


class SubscriberKind(enum.Enum):
    ACCOUNT = "account"  # Subscription-Id END_USER_PRIVATE = account number (PIN access)
    E164 = "e164"  # Subscription-Id END_USER_E164 = caller number (caller ID access)


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
    CALLEE_BUSY = "callee_busy"
    NO_ANSWER = "no_answer"
    UNREACHABLE = "unreachable"
    CHARGING_FAILED = "charging_failed"
    NO_DESTINATION = "no_destination"
    ABORTED = "aborted"
    VOUCHER_FAILED = "voucher_failed"  # too many refused voucher codes in this call
    SERVICE_ERROR = "service_error"  # a back-end request failed (e.g. voucher redemption)


class TerminationCause(enum.IntEnum):
    """RFC 6733 §8.15 Termination-Cause, sent in CCR-T (RFC 4006 §8 allows it there).

    There is no "credit limit" value: a call cut because its final granted units are used
    up ended because its authorised session time expired, DIAMETER_AUTH_EXPIRED (6). An
    operator kill arrives as ASR: DIAMETER_ADMINISTRATIVE (4), the value RFC 6733 gives for
    "the receipt of an Abort-Session-Request". An OCS that stopped answering: BAD_ANSWER."""

    LOGOUT = 1
    BAD_ANSWER = 3
    ADMINISTRATIVE = 4
    AUTH_EXPIRED = 6


class CalleeFailure(enum.Enum):
    BUSY = "busy"
    NO_ANSWER = "no_answer"
    UNREACHABLE = "unreachable"
    INVALID = "invalid"
    FAILED = "failed"


def classify_failure(status: int, progressed: bool) -> CalleeFailure:
    """What a final SIP status on the outgoing leg means to the caller.

    `progressed`: a provisional response (180/183) was seen, i.e. the destination rang.
    A transaction timeout (408, RFC 3261 Timer B) or 480 after ringing is "no answer";
    without any response it is "unreachable" (as are 5xx and transport errors)."""
    if status in (486, 600, 603):
        return CalleeFailure.BUSY
    if status in (408, 480, 487):
        return CalleeFailure.NO_ANSWER if progressed else CalleeFailure.UNREACHABLE
    if status in (404, 410, 484, 604):
        return CalleeFailure.INVALID
    if status == 0 or 500 <= status < 600:
        return CalleeFailure.UNREACHABLE
    return CalleeFailure.FAILED


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
class LockoutChecked:
    """Answer to `CheckLockout`: the caller ID (or everyone: global limit) may not try."""

    locked: bool


@dataclass(frozen=True, slots=True)
class FailureRecorded:
    """Answer to `RecordFailure`: `locked` when this failure reached a limit."""

    locked: bool


@dataclass(frozen=True, slots=True)
class AccountRefreshed:
    """Answer to `RefreshAccount` (credit after a call)."""

    account: AccountInfo | None


class VoucherResult(enum.Enum):
    """What a voucher redemption came to, as the caller is told it."""

    OK = "ok"
    INVALID = "invalid"  # malformed, unknown or voided by the operator
    USED = "used"
    EXPIRED = "expired"
    ERROR = "error"  # the platform could not redeem (database down, account gone)


@dataclass(frozen=True, slots=True)
class VoucherRedeemed:
    """Answer to `RedeemVoucher`; `account` is re-read after a redemption (new credit)."""

    result: VoucherResult
    account: AccountInfo | None = None


@dataclass(frozen=True, slots=True)
class DestinationChecked:
    status: DestinationStatus
    affordable_seconds: int | None = None  # at the destination's tariff; None = unlimited


@dataclass(frozen=True, slots=True)
class FarEndProgress:
    """A provisional response on the outgoing leg (180 / 183); `early_media` when it carried
    SDP, i.e. the destination plays its own ringback or announcement."""

    status: int
    early_media: bool = False


@dataclass(frozen=True, slots=True)
class FarEndAnswered:
    connect_delay: float  # seconds from INVITE to answer


@dataclass(frozen=True, slots=True)
class FarEndFailed:
    reason: str = ""
    status: int = 0
    failure: CalleeFailure | None = None  # set by the adapter when it knows (ICMP error)


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
    | LockoutChecked
    | FailureRecorded
    | AccountRefreshed
    | VoucherRedeemed
    | DestinationChecked
    | FarEndProgress
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
class Ringing:
    """Tell the (not yet answered) caller the destination rings: 180, or 183 with our SDP
    when `early_media` (the destination's early media is then relayed)."""

    early_media: bool = False


class Leg(enum.Enum):
    CALLER = "caller"
    CALLEE = "callee"


@dataclass(frozen=True, slots=True)
class Play:
    """Play prompt files in sequence; `PromptFinished(play_id)` when done (caller leg, not
    looped). A prompt name `"en:name"` forces its language (language menu); names starting
    with ``tone_`` are tones. `loop` repeats until `StopPlay` (ringback)."""

    play_id: int
    language: str
    prompts: tuple[str, ...]
    leg: Leg = Leg.CALLER
    loop: bool = False


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
class CheckLockout:
    caller: str


@dataclass(frozen=True, slots=True)
class RecordFailure:
    caller: str
    kind: str  # "pin" or "voucher"


@dataclass(frozen=True, slots=True)
class RefreshAccount:
    """Re-read the account once the previous call's CCR-T is done."""

    account_id: int


@dataclass(frozen=True, slots=True)
class RedeemVoucher:
    """Credit `account` with the voucher `code` (the platform's redemption rule); answered
    by `VoucherRedeemed`. `caller` is recorded as who redeemed it."""

    code: str
    account: AccountInfo
    caller: str


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
class EarlyMedia:
    """Relay the destination's early media to the caller (one way, before answer)."""


@dataclass(frozen=True, slots=True)
class Bridge:
    """Relay media between caller and far end."""


@dataclass(frozen=True, slots=True)
class Unbridge:
    """Stop relaying media (the conversation is over; the legs stay up for announcements)."""


@dataclass(frozen=True, slots=True)
class RelayDigit:
    """Send a DTMF digit the caller pressed while connected to the destination."""

    digit: str


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
    cause: TerminationCause = TerminationCause.LOGOUT


@dataclass(frozen=True, slots=True)
class Finished:
    """The dialog is over; the adapter may drop it."""

    reason: EndReason


Command = (
    Answer
    | Reject
    | Ringing
    | Play
    | StopPlay
    | Hangup
    | StartTimer
    | CancelTimer
    | LookupPin
    | LookupCaller
    | LookupDid
    | CheckLockout
    | RecordFailure
    | RefreshAccount
    | RedeemVoucher
    | CheckDestination
    | Connect
    | EarlyMedia
    | Bridge
    | Unbridge
    | RelayDigit
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
P_LANGUAGE_OPTION = "language_option"  # "for English, press 2", in each language
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
P_NO_REDIAL = "no_redial"
P_YOU_HAVE = "you_have"
P_FOR_THIS_CALL = "for_this_call"
P_CONNECTING = "connecting"
P_CALL_FAILED = "call_failed"
P_BUSY = "callee_busy"
P_NO_ANSWER = "no_answer"
P_UNREACHABLE = "unreachable"
P_CREDIT_WARNING = "credit_warning"
P_EXHAUSTED = "credit_exhausted"
P_ANOTHER_CALL = "another_call"
P_GOODBYE = "goodbye"
P_SERVICE_ERROR = "service_unavailable"
# Voucher recharge by phone (star then two where a destination is asked).
P_VOUCHER_MENU = "voucher_menu"  # "to top up with a voucher, press star then two"
P_VOUCHER_ENTER = "voucher_enter"
P_VOUCHER_INVALID = "voucher_invalid"
P_VOUCHER_USED = "voucher_used"
P_VOUCHER_EXPIRED = "voucher_expired"
P_VOUCHER_DONE = "voucher_done"

TONE_RINGBACK = "tone_ringback"
TONE_WARNING = "tone_warning"
TONES = (TONE_RINGBACK, TONE_WARNING)

ALL_PROMPTS = (
    P_WELCOME,
    P_LANGUAGE_OPTION,
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
    P_NO_REDIAL,
    P_YOU_HAVE,
    P_FOR_THIS_CALL,
    P_CONNECTING,
    P_CALL_FAILED,
    P_BUSY,
    P_NO_ANSWER,
    P_UNREACHABLE,
    P_CREDIT_WARNING,
    P_EXHAUSTED,
    P_ANOTHER_CALL,
    P_GOODBYE,
    P_SERVICE_ERROR,
    P_VOUCHER_MENU,
    P_VOUCHER_ENTER,
    P_VOUCHER_INVALID,
    P_VOUCHER_USED,
    P_VOUCHER_EXPIRED,
    P_VOUCHER_DONE,
)

VOUCHER_REFUSALS = {
    VoucherResult.INVALID: P_VOUCHER_INVALID,
    VoucherResult.USED: P_VOUCHER_USED,
    VoucherResult.EXPIRED: P_VOUCHER_EXPIRED,
}

FAILURE_PROMPTS = {
    CalleeFailure.BUSY: P_BUSY,
    CalleeFailure.NO_ANSWER: P_NO_ANSWER,
    CalleeFailure.UNREACHABLE: P_UNREACHABLE,
    CalleeFailure.INVALID: P_INVALID,
    CalleeFailure.FAILED: P_CALL_FAILED,
}
FAILURE_REASONS = {
    CalleeFailure.BUSY: EndReason.CALLEE_BUSY,
    CalleeFailure.NO_ANSWER: EndReason.NO_ANSWER,
    CalleeFailure.UNREACHABLE: EndReason.UNREACHABLE,
    CalleeFailure.INVALID: EndReason.CALL_FAILED,
    CalleeFailure.FAILED: EndReason.CALL_FAILED,
}
# Final response to an unanswered (one-step) caller for each end reason.
REJECT_STATUS = {
    EndReason.NOT_FOUND: (404, "Not Found"),
    EndReason.CALL_FAILED: (480, "Temporarily Unavailable"),
    EndReason.CALLEE_BUSY: (486, "Busy Here"),
    EndReason.NO_ANSWER: (480, "Temporarily Unavailable"),
    EndReason.UNREACHABLE: (480, "Temporarily Unavailable"),
    EndReason.NO_CREDIT: (402, "Payment Required"),
    EndReason.CHARGING_FAILED: (503, "Service Unavailable"),
    EndReason.LOCKED_OUT: (403, "Forbidden"),
}

REDIAL_KEY = "*"
VOUCHER_KEY = "2"  # after REDIAL_KEY: "*2" recharges with a voucher

# Timer names
T_DIGIT = "digit"
T_QUOTA = "quota"  # CCR-U due
T_CUTOFF = "cutoff"  # final units used up
T_WARNING = "warning"  # final units end in `warning_seconds`
T_RING = "ring"  # outgoing leg not answered
T_CHARGING = "charging"  # OCS did not answer

# --------------------------------------------------------------------------- engine


class State(enum.Enum):
    IDLE = "idle"
    LOOKUP_CALLER = "lookup_caller"  # one-step (DID): who calls?
    LOOKUP_DID = "lookup_did"
    ACCESS_CALLER = "access_caller"  # access number: is the caller ID registered?
    CHECK_LOCKOUT = "check_lockout"
    LANGUAGE = "language"
    PIN = "pin"
    LOOKUP_PIN = "lookup_pin"
    RECORD_FAILURE = "record_failure"
    DESTINATION = "destination"
    CHECK_DESTINATION = "check_destination"
    CONNECTING = "connecting"
    STARTING_CHARGE = "starting_charge"
    CONNECTED = "connected"
    REFRESH_ACCOUNT = "refresh_account"  # after a call, before offering another
    VOUCHER_LOCKOUT = "voucher_lockout"  # "*2" pressed: may this caller try a code?
    VOUCHER = "voucher"  # collecting the code
    REDEEM_VOUCHER = "redeem_voucher"
    VOUCHER_FAILURE = "voucher_failure"  # a refused code being recorded in the lockout store
    CLOSING = "closing"  # final prompt playing, then hang up
    ENDED = "ended"


COLLECTING = (State.LANGUAGE, State.PIN, State.DESTINATION, State.VOUCHER)


@dataclass(slots=True)
class _Collector:
    digits: str = ""
    active: bool = False  # collecting (prompt may still be playing: barge-in)


@dataclass(slots=True)
class Dialog:
    """One call. `handle(event, now)` returns the commands to carry out, in order."""

    config: DialogConfig
    state: State = State.IDLE
    calling: str = ""
    called: str = ""
    one_step: bool = False  # DID access: no prompts, caller answered only on connect
    language: str = ""
    language_chosen: bool = False  # picked in the language menu: wins over the account's
    account: AccountInfo | None = None
    subscriber: SubscriberKind = SubscriberKind.ACCOUNT
    destination: str = ""
    last_dialed: str = ""
    pin_tries: int = 0
    destination_tries: int = 0
    voucher_tries: int = 0  # refused voucher codes in this call (never reset)
    voucher_refusal: str = ""  # prompt to play once a refused code is recorded
    calls: int = 0  # outgoing calls placed in this dialog
    end_reason: EndReason | None = None
    answered: bool = False
    connect_delay: int = 0
    progressed: bool = False  # the destination sent 180/183
    early_media: bool = False
    time_announced: bool = False  # "you have N minutes" was played before connecting
    # charging bookkeeping (one set per outgoing call)
    answered_at: float | None = None
    reported_until: float | None = None  # time up to which usage has been reported
    charge_pending: bool = False
    final_units: bool = False
    warned: bool = False
    charged_seconds: int = 0  # total seconds reported (CCR-U + CCR-T)
    _play_seq: int = 0
    _playing: int | None = None
    _ringback: int | None = None  # play id of the local ringback tone
    _collector: _Collector = field(default_factory=_Collector)

    # ----------------------------------------------------------------- helpers

    def _play(self, *prompts: str, loop: bool = False) -> Play:
        self._play_seq += 1
        self._playing = self._play_seq
        return Play(
            self._play_seq, self.language or self.config.default_language, prompts, loop=loop
        )

    def _stop_playing(self) -> list[Command]:
        if self._playing is None:
            return []
        self._playing = None
        return [StopPlay()]

    def _close(self, reason: EndReason, *prompts: str) -> list[Command]:
        """Play the final prompts (if any) then hang up the caller."""
        self.end_reason = reason
        self._collector = _Collector()
        out: list[Command] = [CancelTimer(T_DIGIT), *self._stop_playing()]
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
            status, text = REJECT_STATUS.get(self.end_reason, (487, "Request Terminated"))
            return [Reject(status, text), Finished(self.end_reason)]
        return [Hangup(self.end_reason), Finished(self.end_reason)]

    def _collect(self, *prompts: str) -> list[Command]:
        """Play a question and collect digits (barge-in allowed)."""
        self._collector = _Collector(active=True)
        return [CancelTimer(T_DIGIT), self._play(*prompts)]

    def _credit_words(self, account: AccountInfo) -> tuple[str, ...]:
        # Money only: the time it buys depends on the destination, told once dialled.
        return speech.credit_announcement(
            self.language, account.credit_money, self.config.currency, None
        )

    def _stop_charging(self, now: float, cause: TerminationCause) -> list[Command]:
        """CCR-T with the seconds not yet reported; cancels charging timers."""
        out: list[Command] = [
            CancelTimer(T_QUOTA),
            CancelTimer(T_CUTOFF),
            CancelTimer(T_WARNING),
            CancelTimer(T_CHARGING),
        ]
        if self.answered_at is None:
            return out
        # Exact duration: total whole seconds since answer minus what CCR-Us already reported.
        total = max(0, round(now - self.answered_at))
        used = max(0, total - self.charged_seconds)
        self.charged_seconds += used
        self.answered_at = None
        out.append(ChargeStop(used, cause))
        return out

    def _use_account_language(self, account: AccountInfo) -> None:
        if not self.language_chosen:
            self.language = account.language or self.config.default_language

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
            if self.config.one_step_access:
                self.state = State.ACCESS_CALLER
                return [Answer(), LookupCaller(event.calling)]
            return [Answer(), *self._check_lockout()]
        self.one_step = True
        self.subscriber = SubscriberKind.E164
        self.state = State.LOOKUP_CALLER
        return [LookupCaller(event.calling)]

    def _on_access_caller(self, event: CallerLookedUp, now: float) -> list[Command]:
        account = event.account
        if account is None or self.config.caller_pin_required or account.pin_required:
            return self._check_lockout()
        # One-step on the access number: the registered caller ID identifies the account.
        self.account = account
        self.subscriber = SubscriberKind.E164
        self._use_account_language(account)
        return self._authenticated(account, P_WELCOME)

    def _check_lockout(self) -> list[Command]:
        self.state = State.CHECK_LOCKOUT
        return [CheckLockout(self.calling)]

    def _on_lockout(self, event: LockoutChecked, now: float) -> list[Command]:
        if event.locked:
            return self._close(EndReason.LOCKED_OUT, P_LOCKED, P_GOODBYE)
        if self.config.language_menu and len(self.config.languages) > 1:
            self.state = State.LANGUAGE
            options = tuple(f"{lang.lower()}:{P_LANGUAGE_OPTION}" for lang in self.config.languages)
            return self._collect(P_WELCOME, *options)
        self.state = State.PIN
        return self._collect(P_WELCOME, P_ENTER_PIN)

    def _on_caller(self, event: CallerLookedUp, now: float) -> list[Command]:
        if event.account is None:
            return self._finish(EndReason.NOT_FOUND)
        self.account = event.account
        self._use_account_language(event.account)
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
        if self.state is State.CONNECTING and not self.one_step and not self.early_media:
            # "connecting" heard: local ringback until the destination answers or sends
            # its own early media.
            ringback = self._play(TONE_RINGBACK, loop=True)
            self._ringback = ringback.play_id
            return [ringback]
        if self._collector.active and self.state in COLLECTING:
            if self.state is State.LANGUAGE:
                timeout = self.config.menu_timeout
            elif self._collector.digits:
                timeout = self.config.inter_digit_timeout
            else:
                timeout = self.config.first_digit_timeout
            return [StartTimer(T_DIGIT, timeout)]
        return []

    def _on_digit(self, event: DigitReceived, now: float) -> list[Command]:
        if not self._collector.active:
            return []
        out: list[Command] = [*self._stop_playing(), CancelTimer(T_DIGIT)]  # barge-in
        if self.state is State.LANGUAGE:
            return out + self._language_chosen(event.digit)
        if event.digit == "#":
            return out + self._digits_done()
        digits = self._collector.digits
        if event.digit == REDIAL_KEY and self.state is State.DESTINATION and not digits:
            self._collector.digits = REDIAL_KEY  # "*" then "#" or timeout: redial
        elif event.digit == VOUCHER_KEY and digits == REDIAL_KEY:
            self._collector = _Collector()  # "*" then "2": voucher recharge
            return out + self._voucher_start()
        elif event.digit.isdigit() and not digits.startswith(REDIAL_KEY):
            self._collector.digits += event.digit
        if self.state is State.PIN:
            limit = self.config.pin_max_digits
        elif self.state is State.VOUCHER:
            limit = self.config.voucher_max_digits
        else:
            limit = self.config.destination_max_digits
        if len(self._collector.digits) >= limit:
            return out + self._digits_done()
        out.append(StartTimer(T_DIGIT, self.config.inter_digit_timeout))
        return out  # other "*" and A-D are ignored

    def _on_digit_timeout(self, event: TimerExpired, now: float) -> list[Command]:
        if event.name != T_DIGIT or not self._collector.active:
            return []
        if self.state is State.LANGUAGE:
            return self._language_chosen("")
        return self._digits_done()

    def _language_chosen(self, key: str) -> list[Command]:
        self._collector = _Collector()
        languages = self.config.languages
        if key.isdigit() and 1 <= int(key) <= len(languages):
            self.language = languages[int(key) - 1]
            self.language_chosen = True
        self.state = State.PIN
        return self._collect(P_ENTER_PIN)

    def _digits_done(self) -> list[Command]:
        digits = self._collector.digits
        self._collector = _Collector()
        if self.state is State.PIN:
            if not digits:
                return self._pin_failed(recorded=False)
            self.state = State.LOOKUP_PIN
            return [LookupPin(digits)]
        if self.state is State.VOUCHER:
            return self._voucher_entered(digits)
        if not digits:
            return self._destination_retry(self._destination_question())
        if self.account is None:  # pragma: no cover - cannot happen in DESTINATION
            return self._close(EndReason.CHARGING_FAILED, P_SERVICE_ERROR)
        if digits == REDIAL_KEY:
            digits = self.last_dialed or self.account.last_dialed
            if not digits:
                return self._destination_retry(P_NO_REDIAL, self._destination_question())
        self.destination = digits
        self.state = State.CHECK_DESTINATION
        return [CheckDestination(self.account, digits, self.subscriber, self.calling)]

    # ----------------------------------------------------------------- PIN

    def _pin_failed(self, *, recorded: bool = True) -> list[Command]:
        """A wrong PIN is recorded in the lockout store (shared, persistent) first; an
        empty entry (timeout) only counts as one of this call's tries."""
        self.pin_tries += 1
        if recorded:
            self.state = State.RECORD_FAILURE
            return [RecordFailure(self.calling, "pin")]
        return self._after_failure(locked=False)

    def _on_failure_recorded(self, event: FailureRecorded, now: float) -> list[Command]:
        return self._after_failure(event.locked)

    def _after_failure(self, locked: bool) -> list[Command]:
        self.state = State.PIN
        if locked:
            return self._close(EndReason.LOCKED_OUT, P_WRONG_PIN, P_LOCKED, P_GOODBYE)
        if self.pin_tries >= self.config.max_pin_tries:
            return self._close(EndReason.PIN_FAILED, P_WRONG_PIN, P_TOO_MANY, P_GOODBYE)
        return self._collect(P_WRONG_PIN, P_ENTER_PIN)

    def _on_pin(self, event: PinLookedUp, now: float) -> list[Command]:
        if event.account is None:
            return self._pin_failed()
        self.account = event.account
        self.subscriber = SubscriberKind.ACCOUNT
        self._use_account_language(event.account)
        return self._authenticated(event.account)

    def _authenticated(self, account: AccountInfo, *before: str) -> list[Command]:
        self.state = State.DESTINATION
        if account.available_units <= 0:
            # No credit: offer a voucher recharge instead of hanging up.
            return self._collect(
                *before, *self._credit_words(account), P_NO_CREDIT, P_VOUCHER_MENU
            )
        return self._collect(*before, *self._credit_words(account), P_ENTER_DEST)

    # ----------------------------------------------------------------- destination

    def _no_credit(self) -> bool:
        return self.account is not None and self.account.available_units <= 0

    def _destination_question(self) -> str:
        """What a caller at the destination step is asked: the number, or (with no credit
        to call anywhere) star-two for a voucher. Both are accepted either way."""
        return P_VOUCHER_MENU if self._no_credit() else P_ENTER_DEST

    def _destination_retry(self, *prompts: str) -> list[Command]:
        """Tell why (all prompts but the last), ask again (the last); limited tries."""
        self.destination_tries += 1
        self.state = State.DESTINATION
        if self.destination_tries >= self.config.max_destination_tries:
            reason = EndReason.NO_CREDIT if self._no_credit() else EndReason.NO_DESTINATION
            told = [p for p in prompts[:-1] if p != P_VOUCHER_MENU]
            return self._close(reason, *told, P_GOODBYE)
        return self._collect(*prompts)

    def _on_destination(self, event: DestinationChecked, now: float) -> list[Command]:
        if event.status is DestinationStatus.OK:
            seconds = event.affordable_seconds
            if seconds is not None and seconds <= 0:
                return self._destination_refused(P_INSUFFICIENT)
            return self._connect(seconds)
        prompt = {
            DestinationStatus.BARRED: P_BARRED,
            DestinationStatus.NO_CREDIT: P_INSUFFICIENT,
            DestinationStatus.INVALID: P_INVALID,
        }[event.status]
        return self._destination_refused(prompt)

    def _connect(self, seconds: int | None) -> list[Command]:
        self.state = State.CONNECTING
        self.calls += 1
        self.last_dialed = self.destination
        self.progressed = self.early_media = self.time_announced = False
        out: list[Command] = [
            Connect(self.destination),
            StartTimer(T_RING, self.config.no_answer_timeout),
        ]
        if self.one_step:
            return [*out, Ringing()]
        words: tuple[str, ...] = ()
        if seconds is not None:
            words = (P_YOU_HAVE, *speech.say_time_left(seconds, self.language), P_FOR_THIS_CALL)
            self.time_announced = True
        return [self._play(*words, P_CONNECTING), *out]

    def _destination_refused(self, prompt: str) -> list[Command]:
        if self.one_step:
            # No menu in one-step: answer, tell why, hang up.
            self.answered = True
            reason = EndReason.CALL_FAILED if prompt != P_INSUFFICIENT else EndReason.NO_CREDIT
            self.end_reason = reason
            self.state = State.CLOSING
            return [Answer(), self._play(prompt, P_GOODBYE)]
        if prompt == P_INSUFFICIENT and not self._no_credit():
            # Short of credit for this destination: say how to top up, then ask again.
            return self._destination_retry(prompt, P_VOUCHER_MENU, P_ENTER_DEST)
        return self._destination_retry(prompt, self._destination_question())

    # ----------------------------------------------------------------- outgoing leg

    def _on_far_progress(self, event: FarEndProgress, now: float) -> list[Command]:
        self.progressed = True
        if not event.early_media or self.early_media:
            return []
        self.early_media = True
        if self.one_step:
            return [Ringing(early_media=True), EarlyMedia()]
        # Our ringback stops; a prompt still playing finishes first (the caller leg drops
        # relayed audio while it plays).
        out = self._stop_playing() if self._playing == self._ringback else []
        return [*out, EarlyMedia()]

    def _on_far_answered(self, event: FarEndAnswered, now: float) -> list[Command]:
        if self.account is None:  # pragma: no cover
            return []
        self.connect_delay = max(0, round(event.connect_delay))
        self.answered_at = now
        self.reported_until = now
        self.charged_seconds = 0
        self.final_units = self.warned = False
        self.state = State.STARTING_CHARGE
        self.charge_pending = True
        out: list[Command] = [CancelTimer(T_RING), *self._stop_playing()]
        out += [
            ChargeStart(
                self.account, self.subscriber, self.calling, self.destination, self.connect_delay
            ),
            StartTimer(T_CHARGING, self.config.charging_timeout),
        ]
        return out

    def _on_far_failed(self, event: FarEndFailed, now: float) -> list[Command]:
        failure = event.failure or classify_failure(event.status, self.progressed)
        return [CancelTimer(T_RING), *self._call_failed(failure)]

    def _on_ring_timeout(self, event: TimerExpired, now: float) -> list[Command]:
        if event.name != T_RING:
            return []
        return [ReleaseCallee(), *self._call_failed(CalleeFailure.NO_ANSWER)]

    def _call_failed(self, failure: CalleeFailure) -> list[Command]:
        reason = FAILURE_REASONS[failure]
        if self.one_step:
            return self._finish(reason)
        out = self._stop_playing()
        prompt = FAILURE_PROMPTS[failure]
        tries_left = self.destination_tries + 1 < self.config.max_destination_tries
        if self.config.another_call and tries_left:
            # Tell why, then let the caller dial again (failed attempts are limited).
            self.destination_tries += 1
            self.state = State.DESTINATION
            return out + self._collect(prompt, P_ANOTHER_CALL)
        return out + self._close(reason, prompt, P_GOODBYE)

    # ----------------------------------------------------------------- charging

    def _on_charge_started(self, event: ChargingAnswered, now: float) -> list[Command]:
        self.charge_pending = False
        out: list[Command] = [CancelTimer(T_CHARGING)]
        if not event.ok or event.granted <= 0:
            # Refused at CCR-I: no bridge; the far end is released; tell the caller.
            # A CCR-T with 0 used closes the session on the OCS (as Kamailio does).
            out += [
                ReleaseCallee(),
                *self._stop_charging(self.answered_at or now, TerminationCause.LOGOUT),
            ]
            if event.result_code == 4012 or event.ok:
                return out + self._answer_and_close(EndReason.NO_CREDIT, P_NO_CREDIT)
            return out + self._answer_and_close(EndReason.CHARGING_FAILED, P_SERVICE_ERROR)
        self.state = State.CONNECTED
        self.end_reason = None
        if self.one_step and not self.answered:
            self.answered = True
            out.append(Answer())
        out.append(Bridge())
        out += self._arm_grant(event, at_start=True)
        return out

    def _answer_and_close(self, reason: EndReason, *prompts: str) -> list[Command]:
        out: list[Command] = []
        if not self.answered:
            self.answered = True
            out.append(Answer())
        if prompts[-1:] != (P_GOODBYE,):
            prompts = (*prompts, P_GOODBYE)
        return out + self._close(reason, *prompts)

    def _arm_grant(self, event: ChargingAnswered, *, at_start: bool = False) -> list[Command]:
        self.final_units = event.final
        out: list[Command] = [CancelTimer(T_QUOTA), CancelTimer(T_CUTOFF), CancelTimer(T_WARNING)]
        if not event.final:
            self.warned = False  # topped up: warn again if final units come back
            margin = min(self.config.update_margin, event.granted / 2)
            return [*out, StartTimer(T_QUOTA, max(0.5, event.granted - margin))]
        out.append(StartTimer(T_CUTOFF, float(event.granted)))
        lead = self.config.warning_seconds
        if lead <= 0 or self.warned or not (self.config.warning_tone or self.config.warning_prompt):
            return out
        if event.granted > lead:
            return [*out, StartTimer(T_WARNING, float(event.granted - lead))]
        if at_start and self.time_announced:
            return out  # the caller was just told how long the call can last
        return out + self._warn()  # less than the lead time left: warn now

    def _warn(self) -> list[Command]:
        self.warned = True
        prompts: tuple[str, ...] = ()
        if self.config.warning_tone:
            prompts += (TONE_WARNING,)
        if self.config.warning_prompt:
            prompts += (P_CREDIT_WARNING,)
        return [self._play(*prompts)]

    def _on_quota_timer(self, event: TimerExpired, now: float) -> list[Command]:
        if event.name == T_CUTOFF:
            return self._cut_off(now)
        if event.name == T_WARNING:
            return self._warn() if self.final_units and not self.warned else []
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
        out: list[Command] = [
            ReleaseCallee(),
            *self._stop_charging(now, TerminationCause.ADMINISTRATIVE),
        ]
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
        if event.ok and event.granted > 0:
            return out + self._arm_grant(event)
        if event.ok or event.result_code == 4012:
            # No more credit: behave as if the final units were used now.
            return out + self._cut_off(now)
        return out + self._charging_lost(now)

    def _cut_off(self, now: float) -> list[Command]:
        """Final units used: the conversation stops, both parties hear the announcement,
        then both legs are released (the caller's BYE comes after its prompt)."""
        out: list[Command] = [Unbridge(), *self._stop_charging(now, TerminationCause.AUTH_EXPIRED)]
        out += self._close(EndReason.CREDIT_EXHAUSTED, P_EXHAUSTED, P_GOODBYE)
        language = self.language or self.config.default_language
        return [*out, Play(0, language, (P_EXHAUSTED,), Leg.CALLEE)]

    def _charging_lost(self, now: float) -> list[Command]:
        out: list[Command] = [
            ReleaseCallee(),
            *self._stop_charging(now, TerminationCause.BAD_ANSWER),
        ]
        return out + self._answer_and_close(EndReason.CHARGING_FAILED, P_SERVICE_ERROR)

    def _on_connected_digit(self, event: DigitReceived, now: float) -> list[Command]:
        return [RelayDigit(event.digit)]

    # ----------------------------------------------------------------- hang-ups

    def _on_caller_hangup(self, now: float) -> list[Command]:
        out: list[Command] = [CancelTimer(T_DIGIT), CancelTimer(T_RING), *self._stop_playing()]
        if self.state in (State.CONNECTING, State.STARTING_CHARGE, State.CONNECTED):
            out.append(ReleaseCallee())
        out += self._stop_charging(now, TerminationCause.LOGOUT)
        self.answered = False  # nothing left to hang up
        if self.state is not State.CLOSING or self.end_reason is None:
            self.end_reason = EndReason.CALLER_HANGUP
        self.state = State.ENDED
        return [*out, Finished(self.end_reason)]

    def _on_callee_hangup(self, event: CalleeHungUp, now: float) -> list[Command]:
        out = [*self._stop_charging(now, TerminationCause.LOGOUT), *self._stop_playing()]
        self.end_reason = EndReason.CALLEE_HANGUP
        if self.one_step or not self.config.another_call or self.account is None:
            return out + self._finish(EndReason.CALLEE_HANGUP)
        # Another call without hanging up: read the credit again once the CCR-T is done.
        self.state = State.REFRESH_ACCOUNT
        return [*out, Unbridge(), ReleaseCallee(), RefreshAccount(self.account.id)]

    def _on_refreshed(self, event: AccountRefreshed, now: float) -> list[Command]:
        if event.account is None:
            return self._close(EndReason.CHARGING_FAILED, P_SERVICE_ERROR, P_GOODBYE)
        self.account = event.account
        self.destination_tries = 0
        self.state = State.DESTINATION
        if event.account.available_units <= 0:
            return self._collect(*self._credit_words(event.account), P_NO_CREDIT, P_VOUCHER_MENU)
        return self._collect(*self._credit_words(event.account), P_ANOTHER_CALL)

    # ----------------------------------------------------------------- voucher recharge

    def _voucher_start(self) -> list[Command]:
        """"*2" at the destination step: a code may only be tried when the caller ID (and
        everyone: the global limit) is not locked out, as for a PIN."""
        self.state = State.VOUCHER_LOCKOUT
        return [CheckLockout(self.calling)]

    def _on_voucher_lockout(self, event: LockoutChecked, now: float) -> list[Command]:
        if event.locked:
            return self._close(EndReason.LOCKED_OUT, P_LOCKED, P_GOODBYE)
        self.state = State.VOUCHER
        return self._collect(P_VOUCHER_ENTER)

    def _voucher_entered(self, code: str) -> list[Command]:
        if not code:
            # "#" alone or silence: no code after all, back to the destination question
            # (a destination try, so this cannot loop forever).
            return self._destination_retry(self._destination_question())
        if self.account is None:  # pragma: no cover - the voucher menu needs an account
            return self._close(EndReason.SERVICE_ERROR, P_SERVICE_ERROR, P_GOODBYE)
        self.state = State.REDEEM_VOUCHER
        return [RedeemVoucher(code, self.account, self.calling)]

    def _on_voucher_redeemed(self, event: VoucherRedeemed, now: float) -> list[Command]:
        if event.result is VoucherResult.ERROR:
            return self._close(EndReason.SERVICE_ERROR, P_SERVICE_ERROR, P_GOODBYE)
        if event.result is VoucherResult.OK:
            if event.account is None:  # credited, but the account could not be read again
                return self._close(
                    EndReason.SERVICE_ERROR, P_VOUCHER_DONE, P_SERVICE_ERROR, P_GOODBYE
                )
            self.account = event.account
            self.destination_tries = 0
            self.state = State.DESTINATION
            return self._collect(
                P_VOUCHER_DONE, *self._credit_words(event.account), self._destination_question()
            )
        # A refused code counts like a wrong PIN: recorded before the caller hears anything.
        self.voucher_tries += 1
        self.voucher_refusal = VOUCHER_REFUSALS[event.result]
        self.state = State.VOUCHER_FAILURE
        return [RecordFailure(self.calling, "voucher")]

    def _on_voucher_failure_recorded(self, event: FailureRecorded, now: float) -> list[Command]:
        refusal = self.voucher_refusal
        if event.locked:
            return self._close(EndReason.LOCKED_OUT, refusal, P_LOCKED, P_GOODBYE)
        if self.voucher_tries >= self.config.max_voucher_tries:
            return self._close(EndReason.VOUCHER_FAILED, refusal, P_TOO_MANY, P_GOODBYE)
        self.state = State.VOUCHER
        return self._collect(refusal, P_VOUCHER_ENTER)


_Handler = Callable[[Dialog, Any, float], list[Command]]
_HANDLERS: dict[tuple[State, type], _Handler] = {}


def _on(state: State, event_type: type, fn: _Handler) -> None:
    _HANDLERS[(state, event_type)] = fn


_on(State.IDLE, CallOffered, Dialog._on_offered)
_on(State.LOOKUP_CALLER, CallerLookedUp, Dialog._on_caller)
_on(State.LOOKUP_DID, DidLookedUp, Dialog._on_did)
_on(State.ACCESS_CALLER, CallerLookedUp, Dialog._on_access_caller)
_on(State.CHECK_LOCKOUT, LockoutChecked, Dialog._on_lockout)
_on(State.LANGUAGE, DigitReceived, Dialog._on_digit)
_on(State.LANGUAGE, TimerExpired, Dialog._on_digit_timeout)
_on(State.PIN, DigitReceived, Dialog._on_digit)
_on(State.PIN, TimerExpired, Dialog._on_digit_timeout)
_on(State.LOOKUP_PIN, PinLookedUp, Dialog._on_pin)
_on(State.RECORD_FAILURE, FailureRecorded, Dialog._on_failure_recorded)
_on(State.DESTINATION, DigitReceived, Dialog._on_digit)
_on(State.DESTINATION, TimerExpired, Dialog._on_digit_timeout)
_on(State.CHECK_DESTINATION, DestinationChecked, Dialog._on_destination)
_on(State.CONNECTING, FarEndProgress, Dialog._on_far_progress)
_on(State.CONNECTING, FarEndAnswered, Dialog._on_far_answered)
_on(State.CONNECTING, FarEndFailed, Dialog._on_far_failed)
_on(State.CONNECTING, TimerExpired, Dialog._on_ring_timeout)
_on(State.STARTING_CHARGE, ChargingAnswered, Dialog._on_charge_started)
_on(State.STARTING_CHARGE, TimerExpired, Dialog._on_quota_timer)
_on(State.STARTING_CHARGE, CalleeHungUp, Dialog._on_callee_hangup)
_on(State.STARTING_CHARGE, ChargingAborted, Dialog._on_aborted)
_on(State.CONNECTED, ChargingAnswered, Dialog._on_charge_updated)
_on(State.CONNECTED, TimerExpired, Dialog._on_quota_timer)
_on(State.CONNECTED, CalleeHungUp, Dialog._on_callee_hangup)
_on(State.CONNECTED, ReauthRequested, Dialog._on_reauth)
_on(State.CONNECTED, ChargingAborted, Dialog._on_aborted)
_on(State.CONNECTED, DigitReceived, Dialog._on_connected_digit)
_on(State.REFRESH_ACCOUNT, AccountRefreshed, Dialog._on_refreshed)
_on(State.VOUCHER_LOCKOUT, LockoutChecked, Dialog._on_voucher_lockout)
_on(State.VOUCHER, DigitReceived, Dialog._on_digit)
_on(State.VOUCHER, TimerExpired, Dialog._on_digit_timeout)
_on(State.REDEEM_VOUCHER, VoucherRedeemed, Dialog._on_voucher_redeemed)
_on(State.VOUCHER_FAILURE, FailureRecorded, Dialog._on_voucher_failure_recorded)
