"""The dialog's issue-11 states, without sockets: caller-ID access on the access number,
language menu, lockout, per-destination time, progress and ringback, busy / no answer /
unreachable, DTMF relay, the warned cut, another call and redial, the service log."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import pytest

from ivr_bridge import dialog as d
from ivr_bridge.servicelog import step_line
from tests.unit.test_ivr_dialog import ALICE, Driver, dial, login, of, offer_access

CALLER = "0611223344"
BOB = d.AccountInfo(
    id=7, number="1007", language="FR", available_units=2600, credit_money=Decimal("0.26")
)


def registered_call(drv: Driver, account: d.AccountInfo = ALICE) -> list[d.Command]:
    out = drv.send(d.CallOffered(CALLER, "6000"))
    assert out == [d.Answer(), d.LookupCaller(CALLER)]
    return drv.send(d.CallerLookedUp(account))


def to_ringing(drv: Driver, seconds: int | None = 600) -> list[d.Command]:
    login(drv)
    dial(drv)
    return drv.send(d.DestinationChecked(d.DestinationStatus.OK, seconds))


def connected(drv: Driver, granted: int = 60, final: bool = False) -> list[d.Command]:
    to_ringing(drv)
    drv.send(d.FarEndAnswered(1.0), 1.0)
    return drv.send(d.ChargingAnswered(ok=True, granted=granted, final=final))


# ------------------------------------------------------------------ caller ID on 6000


def test_registered_caller_on_access_number_skips_the_pin():
    drv = Driver()
    out = registered_call(drv)
    assert not of(out, d.CheckLockout) and not of(out, d.LookupPin)
    play = of(out, d.Play)[0]
    assert play.language == "EN"  # the account's
    assert play.prompts[0] == d.P_WELCOME
    assert play.prompts[-1] == d.P_ENTER_DEST
    drv.finish_prompt()
    out = drv.digits("0141587070#")
    # charged by caller ID, like one-step access
    assert of(out, d.CheckDestination) == [
        d.CheckDestination(ALICE, "0141587070", d.SubscriberKind.E164, CALLER)
    ]


@pytest.mark.parametrize(
    ("config", "account"),
    [
        (d.DialogConfig(caller_pin_required=True), ALICE),  # operator: anti-spoofing
        (d.DialogConfig(), replace(ALICE, pin_required=True)),  # this account only
    ],
)
def test_anti_spoofing_asks_the_pin_of_a_registered_caller(config, account):
    drv = Driver(config)
    out = registered_call(drv, account)
    assert out == [d.CheckLockout(CALLER)]
    out = drv.send(d.LockoutChecked(False))
    assert of(out, d.Play)[0].prompts == (d.P_WELCOME, d.P_ENTER_PIN)
    drv.finish_prompt()
    drv.digits("1234#")
    out = drv.send(d.PinLookedUp(account))
    drv.finish_prompt()
    out = drv.digits("0141587070#")
    assert of(out, d.CheckDestination)[0].subscriber is d.SubscriberKind.ACCOUNT


def test_caller_id_access_can_be_switched_off():
    drv = Driver(d.DialogConfig(one_step_access=False))
    out = drv.send(d.CallOffered(CALLER, "6000"))
    assert out == [d.Answer(), d.CheckLockout(CALLER)]


def test_registered_caller_without_credit_is_offered_a_voucher():
    drv = Driver()
    out = registered_call(drv, replace(BOB, available_units=0, credit_money=Decimal(0)))
    assert of(out, d.Play)[0].prompts[-2:] == (d.P_NO_CREDIT, d.P_VOUCHER_MENU)
    assert not of(out, d.Hangup)
    assert drv.dialog.state is d.State.DESTINATION


# ------------------------------------------------------------------ language


def test_language_menu_offers_each_language_in_its_own_voice():
    drv = Driver(d.DialogConfig(language_menu=True))
    out = offer_access(drv)
    play = of(out, d.Play)[0]
    assert play.language == "FR"
    assert play.prompts == (d.P_WELCOME, "fr:language_option", "en:language_option")
    assert drv.finish_prompt() == [d.StartTimer(d.T_DIGIT, 3.0)]
    out = drv.send(d.DigitReceived("2"))
    play = of(out, d.Play)[0]
    assert (play.language, play.prompts) == ("EN", (d.P_ENTER_PIN,))
    # the caller's explicit choice stays for the whole call, even for a FR account
    drv.finish_prompt()
    drv.digits("5678#")
    out = drv.send(d.PinLookedUp(BOB))
    assert of(out, d.Play)[0].language == "EN"


def test_language_menu_timeout_keeps_the_default_then_the_account_language_applies():
    drv = Driver(d.DialogConfig(language_menu=True))
    offer_access(drv)
    drv.finish_prompt()
    out = drv.send(d.TimerExpired(d.T_DIGIT), 3.0)
    assert of(out, d.Play)[0].language == "FR"
    drv.finish_prompt()
    drv.digits("1234#")
    out = drv.send(d.PinLookedUp(ALICE))
    assert of(out, d.Play)[0].language == "EN"


# ------------------------------------------------------------------ lockout


def test_wrong_pin_is_recorded_before_the_caller_hears_anything():
    drv = Driver()
    offer_access(drv)
    drv.finish_prompt()
    drv.digits("0000#")
    out = drv.send(d.PinLookedUp(None))
    assert out == [d.RecordFailure(CALLER, "pin")]
    assert drv.send(d.DigitReceived("1")) == []  # nothing is collected meanwhile
    out = drv.send(d.FailureRecorded(False))
    assert of(out, d.Play)[0].prompts == (d.P_WRONG_PIN, d.P_ENTER_PIN)


# ------------------------------------------------------------------ time for this call


@pytest.mark.parametrize(
    ("seconds", "language", "words"),
    [
        (13, "FR", ("treize", "secondes")),  # not "zéro minute" (13 s on prefix 38)
        (1, "EN", ("one", "second")),
        (60, "FR", ("une", "minute")),
        (1250, "EN", ("twenty", "minutes")),  # rounded down: never overstated
    ],
)
def test_time_for_this_call_at_the_destination_tariff(seconds, language, words):
    drv = Driver()
    account = replace(ALICE, language=language)
    login(drv, account)
    dial(drv, "38123")
    out = drv.send(d.DestinationChecked(d.DestinationStatus.OK, seconds))
    assert of(out, d.Play)[0].prompts == (d.P_YOU_HAVE, *words, d.P_FOR_THIS_CALL, d.P_CONNECTING)


def test_free_destination_announces_no_time():
    drv = Driver()
    out = to_ringing(drv, None)
    assert of(out, d.Play)[0].prompts == (d.P_CONNECTING,)


# ------------------------------------------------------------------ progress


def test_ringback_after_connecting_prompt_until_answer():
    drv = Driver()
    to_ringing(drv)
    out = drv.finish_prompt()
    (ringback,) = of(out, d.Play)
    assert ringback.prompts == (d.TONE_RINGBACK,) and ringback.loop
    drv.send(d.FarEndProgress(180))  # 180 without SDP: our ringback goes on
    out = drv.send(d.FarEndAnswered(4.0), 4.0)
    assert d.StopPlay() in out


def test_early_media_replaces_our_ringback():
    drv = Driver()
    to_ringing(drv)
    drv.finish_prompt()
    out = drv.send(d.FarEndProgress(183, early_media=True))
    assert out == [d.StopPlay(), d.EarlyMedia()]


def test_early_media_during_the_prompt_waits_for_it_and_skips_ringback():
    drv = Driver()
    to_ringing(drv)
    out = drv.send(d.FarEndProgress(183, early_media=True))
    assert out == [d.EarlyMedia()]  # the prompt is not cut
    assert drv.finish_prompt() == []  # and no ringback over the destination's own


def test_one_step_relays_183_with_early_media():
    drv = Driver()
    drv.send(d.CallOffered(CALLER, "0561500001"))
    drv.send(d.CallerLookedUp(ALICE))
    drv.send(d.DidLookedUp("0141587070"))
    drv.send(d.DestinationChecked(d.DestinationStatus.OK, 600))
    out = drv.send(d.FarEndProgress(183, early_media=True))
    assert out == [d.Ringing(early_media=True), d.EarlyMedia()]


@pytest.mark.parametrize(
    ("status", "progressed", "failure"),
    [
        (486, True, d.CalleeFailure.BUSY),
        (600, False, d.CalleeFailure.BUSY),
        (603, True, d.CalleeFailure.BUSY),
        (408, True, d.CalleeFailure.NO_ANSWER),  # rang, then the transaction timed out
        (480, True, d.CalleeFailure.NO_ANSWER),
        (408, False, d.CalleeFailure.UNREACHABLE),  # Timer B without any response
        (480, False, d.CalleeFailure.UNREACHABLE),
        (503, False, d.CalleeFailure.UNREACHABLE),  # also ICMP errors
        (404, False, d.CalleeFailure.INVALID),
        (484, True, d.CalleeFailure.INVALID),
        (403, True, d.CalleeFailure.FAILED),
    ],
)
def test_failure_classification(status, progressed, failure):
    assert d.classify_failure(status, progressed) is failure


@pytest.mark.parametrize(
    ("event", "prompt", "reason"),
    [
        (d.FarEndFailed("Busy Here", 486), d.P_BUSY, d.EndReason.CALLEE_BUSY),
        (d.FarEndFailed("Request Timeout", 408), d.P_UNREACHABLE, d.EndReason.UNREACHABLE),
        (
            d.FarEndFailed("ICMP", 503, d.CalleeFailure.UNREACHABLE),
            d.P_UNREACHABLE,
            d.EndReason.UNREACHABLE,
        ),
        (d.TimerExpired(d.T_RING), d.P_NO_ANSWER, d.EndReason.NO_ANSWER),
    ],
)
def test_each_failure_has_its_prompt_then_another_call(event, prompt, reason):
    drv = Driver()
    to_ringing(drv)
    drv.finish_prompt()
    out = drv.send(event)
    assert d.StopPlay() in out  # the ringback
    assert of(out, d.Play)[0].prompts == (prompt, d.P_ANOTHER_CALL)
    assert not of(out, d.Hangup)
    # the last allowed attempt: told, then goodbye with the failure as the end reason
    drv.dialog.destination_tries = drv.dialog.config.max_destination_tries - 1
    dial(drv)
    drv.send(d.DestinationChecked(d.DestinationStatus.OK, 600))
    out = drv.send(event)
    assert of(out, d.Play)[0].prompts == (prompt, d.P_GOODBYE)
    assert drv.finish_prompt()[0] == d.Hangup(reason)


def test_one_step_busy_is_relayed_as_486_and_unreachable_as_480():
    for status, expected in ((486, d.Reject(486, "Busy Here")),
                             (503, d.Reject(480, "Temporarily Unavailable"))):  # fmt: skip
        drv = Driver()
        drv.send(d.CallOffered(CALLER, "0561500001"))
        drv.send(d.CallerLookedUp(ALICE))
        drv.send(d.DidLookedUp("0141587070"))
        drv.send(d.DestinationChecked(d.DestinationStatus.OK, 600))
        assert of(drv.send(d.FarEndFailed("", status)), d.Reject) == [expected]


# ------------------------------------------------------------------ DTMF relay


def test_digits_after_connect_are_relayed_to_the_destination():
    drv = Driver()
    connected(drv)
    assert drv.send(d.DigitReceived("5")) == [d.RelayDigit("5")]
    assert drv.send(d.DigitReceived("#")) == [d.RelayDigit("#")]


def test_digits_while_ringing_are_not_relayed():
    drv = Driver()
    to_ringing(drv)
    assert drv.send(d.DigitReceived("5")) == []


# ------------------------------------------------------------------ warned cut


def test_warning_is_armed_lead_seconds_before_final_units_end():
    drv = Driver()
    out = connected(drv, granted=120, final=True)
    assert d.StartTimer(d.T_CUTOFF, 120.0) in out
    assert d.StartTimer(d.T_WARNING, 90.0) in out
    out = drv.send(d.TimerExpired(d.T_WARNING), 90.0)
    (play,) = of(out, d.Play)
    assert play.prompts == (d.TONE_WARNING, d.P_CREDIT_WARNING)
    assert play.leg is d.Leg.CALLER
    assert drv.finish_prompt() == []  # the call goes on
    out = drv.send(d.TimerExpired(d.T_CUTOFF), 30.0)
    assert of(out, d.ChargeStop) == [d.ChargeStop(120, d.TerminationCause.AUTH_EXPIRED)]


@pytest.mark.parametrize(
    ("tone", "prompt", "expected"),
    [(True, False, (d.TONE_WARNING,)), (False, True, (d.P_CREDIT_WARNING,))],
)
def test_warning_mode(tone, prompt, expected):
    drv = Driver(d.DialogConfig(warning_tone=tone, warning_prompt=prompt, warning_seconds=10))
    connected(drv, granted=60, final=True)
    assert d.StartTimer(d.T_WARNING, 50.0) in drv.log
    out = drv.send(d.TimerExpired(d.T_WARNING), 50.0)
    assert of(out, d.Play)[0].prompts == expected


def test_no_warning_when_switched_off():
    drv = Driver(d.DialogConfig(warning_seconds=0))
    out = connected(drv, granted=60, final=True)
    assert not [c for c in out if isinstance(c, d.StartTimer) and c.name == d.T_WARNING]


def test_final_units_shorter_than_the_lead_in_an_update_warn_at_once():
    drv = Driver()
    connected(drv, granted=60)
    drv.send(d.TimerExpired(d.T_QUOTA), 55.0)
    out = drv.send(d.ChargingAnswered(ok=True, granted=20, final=True))
    assert of(out, d.Play)[0].prompts == (d.TONE_WARNING, d.P_CREDIT_WARNING)


def test_no_warning_at_start_when_the_short_time_was_just_announced():
    drv = Driver()
    out = connected(drv, granted=20, final=True)  # "you have ... for this call" was played
    assert not of(out, d.Play)


def test_top_up_cancels_the_warning():
    drv = Driver()
    connected(drv, granted=120, final=True)
    out = drv.send(d.ReauthRequested(), 10.0)
    out = drv.send(d.ChargingAnswered(ok=True, granted=600))
    assert d.CancelTimer(d.T_WARNING) in out and d.CancelTimer(d.T_CUTOFF) in out


# ------------------------------------------------------------------ another call


def test_another_call_after_the_destination_hangs_up_with_redial():
    drv = Driver()
    connected(drv, granted=60)
    out = drv.send(d.CalleeHungUp(), 13.0)
    assert of(out, d.ChargeStop) == [d.ChargeStop(13, d.TerminationCause.LOGOUT)]
    assert of(out, d.RefreshAccount) == [d.RefreshAccount(ALICE.id)]
    assert not of(out, d.Hangup)
    less = replace(ALICE, available_units=ALICE.available_units - 2600,
                   credit_money=Decimal("23.32"))  # fmt: skip
    out = drv.send(d.AccountRefreshed(less))
    play = of(out, d.Play)[0]
    assert play.prompts[0] == d.P_YOUR_CREDIT and play.prompts[-1] == d.P_ANOTHER_CALL
    drv.finish_prompt()
    out = drv.digits("*#")  # star then hash: the last number again
    assert of(out, d.CheckDestination) == [
        d.CheckDestination(less, "0141587070", d.SubscriberKind.ACCOUNT, CALLER)
    ]
    drv.send(d.DestinationChecked(d.DestinationStatus.OK, 600))
    out = drv.send(d.FarEndAnswered(2.0), 2.0)
    assert of(out, d.ChargeStart)[0].account == less
    drv.send(d.ChargingAnswered(ok=True, granted=60))
    out = drv.send(d.CallerHungUp(), 7.4)
    # the second call is charged on its own: 7 s, not 7 + 13
    assert of(out, d.ChargeStop) == [d.ChargeStop(7)]


def test_redial_uses_the_accounts_last_number_and_says_when_there_is_none():
    drv = Driver()
    login(drv, replace(ALICE, last_dialed="0561500001"))
    drv.finish_prompt()
    out = drv.digits("*")
    out = drv.send(d.TimerExpired(d.T_DIGIT), 4.0)
    assert of(out, d.CheckDestination)[0].destination == "0561500001"
    drv = Driver()
    login(drv)
    drv.finish_prompt()
    out = drv.digits("*#")
    assert of(out, d.Play)[0].prompts == (d.P_NO_REDIAL, d.P_ENTER_DEST)


def test_no_more_credit_after_a_call_is_told_and_offered_a_voucher():
    drv = Driver()
    connected(drv)
    drv.send(d.CalleeHungUp(), 5.0)
    broke = replace(ALICE, available_units=0, credit_money=Decimal(0))
    out = drv.send(d.AccountRefreshed(broke))
    assert of(out, d.Play)[0].prompts[-2:] == (d.P_NO_CREDIT, d.P_VOUCHER_MENU)
    assert drv.dialog.state is d.State.DESTINATION


def test_caller_hangup_at_the_another_call_prompt_ends_as_caller_hangup():
    drv = Driver()
    connected(drv)
    drv.send(d.CalleeHungUp(), 5.0)
    drv.send(d.AccountRefreshed(ALICE))
    out = drv.send(d.CallerHungUp())
    assert out[-1] == d.Finished(d.EndReason.CALLER_HANGUP)
    assert not of(out, d.ChargeStop)  # already stopped


# ------------------------------------------------------------------ service log


def test_service_log_masks_the_pin_and_names_the_steps():
    drv = Driver()
    lines = []

    def step(event: d.Event, advance: float = 0.0) -> None:
        out = drv.send(event, advance)
        line = step_line(len(lines) + 1, event, out, drv.dialog.state)
        if line is not None:
            lines.append(line)

    step(d.CallOffered(CALLER, "6000"))
    step(d.CallerLookedUp(None))
    step(d.LockoutChecked(False))
    for digit in "4321#":
        step(d.DigitReceived(digit), 0.2)
    text = repr(lines)
    assert "4321" not in text
    pin_line = lines[-1]
    assert pin_line["actions"] == [{"do": "lookup_pin", "pin": "****"}]
    # the four digit steps before "#" only moved timers: no line
    assert len(lines) == 4
    step(d.PinLookedUp(ALICE))
    assert lines[-1]["event"] == {"type": "pin_result", "account": "1001", "available": 235800}
    assert lines[-1]["actions"][0]["do"] == "play"
    assert lines[-1]["state"] == "destination"


def test_service_log_of_a_call_end_and_relayed_digits():
    drv = Driver()
    connected(drv)
    out = drv.send(d.DigitReceived("7"))
    line = step_line(9, d.DigitReceived("7"), out, drv.dialog.state)
    assert line is not None and line["actions"] == [{"do": "relay_dtmf", "digit": "*"}]
    out = drv.send(d.TimerExpired(d.T_QUOTA), 55.0)
    line = step_line(10, d.TimerExpired(d.T_QUOTA), out, drv.dialog.state)
    assert line is not None and line["actions"] == [{"do": "ccr_update", "used": 55}]
    event = d.ChargingAnswered(ok=True, granted=30, final=True)
    line = step_line(11, event, drv.send(event), drv.dialog.state)
    assert line is not None
    assert line["event"] == {
        "type": "grant", "ok": True, "granted": 30, "final": True, "result_code": 2001
    }
    out = drv.send(d.TimerExpired(d.T_CUTOFF), 30.0)
    line = step_line(12, d.TimerExpired(d.T_CUTOFF), out, drv.dialog.state)
    assert line is not None
    assert {"do": "ccr_terminate", "used": 30, "termination_cause": 6} in line["actions"]
    out = drv.finish_prompt()
    line = step_line(13, d.PromptFinished(0), out, drv.dialog.state)
    assert line is not None and line["actions"][-1] == {"do": "end", "reason": "credit_exhausted"}
