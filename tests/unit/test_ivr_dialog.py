"""The IVR dialog engine, branch by branch, driven like a switch adapter would drive it."""

from __future__ import annotations

from decimal import Decimal

import pytest

from ivr_bridge import dialog as d

ALICE = d.AccountInfo(
    id=1,
    number="1001",
    language="EN",
    available_units=235800,
    credit_money=Decimal("23.58"),
)
BROKE = d.AccountInfo(
    id=2, number="1002", language="FR", available_units=0, credit_money=Decimal("0")
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Driver:
    """Feeds events with a clock and records the commands."""

    def __init__(self, config: d.DialogConfig | None = None) -> None:
        self.clock = Clock()
        self.dialog = d.Dialog(config or d.DialogConfig())
        self.log: list[d.Command] = []

    def send(self, event: d.Event, advance: float = 0.0) -> list[d.Command]:
        self.clock.now += advance
        out = self.dialog.handle(event, self.clock.now)
        self.log += out
        return out

    def finish_prompt(self) -> list[d.Command]:
        plays = [c for c in self.log if isinstance(c, d.Play) and c.leg is d.Leg.CALLER]
        return self.send(d.PromptFinished(plays[-1].play_id))

    def last_play(self) -> d.Play:
        return [c for c in self.log if isinstance(c, d.Play)][-1]

    def digits(self, text: str) -> list[d.Command]:
        out: list[d.Command] = []
        for ch in text:
            out += self.send(d.DigitReceived(ch), 0.2)
        return out


def of(commands: list[d.Command], kind: type) -> list:
    return [c for c in commands if isinstance(c, kind)]


def offer_access(drv: Driver, caller: str = "0611223344") -> list[d.Command]:
    """Call the access number from an unregistered caller ID, not locked out."""
    out = drv.send(d.CallOffered(caller, "6000"))
    assert out == [d.Answer(), d.LookupCaller(caller)]
    out = drv.send(d.CallerLookedUp(None))
    assert out == [d.CheckLockout(caller)]
    return drv.send(d.LockoutChecked(False))


def pin_failure(drv: Driver, digits: str = "9999", locked: bool = False) -> list[d.Command]:
    drv.digits(digits + "#")
    out = drv.send(d.PinLookedUp(None))
    assert out == [d.RecordFailure("0611223344", "pin")]
    return drv.send(d.FailureRecorded(locked))


def login(drv: Driver, account: d.AccountInfo = ALICE) -> list[d.Command]:
    offer_access(drv)
    drv.finish_prompt()
    assert of(drv.digits("1234#"), d.LookupPin) == [d.LookupPin("1234")]
    return drv.send(d.PinLookedUp(account))


def dial(drv: Driver, number: str = "0141587070") -> list[d.Command]:
    drv.finish_prompt()
    return drv.digits(number + "#")


def connected(drv: Driver, granted: int = 60, final: bool = False) -> None:
    login(drv)
    dial(drv)
    drv.send(d.DestinationChecked(d.DestinationStatus.OK, affordable_seconds=600))
    drv.send(d.FarEndAnswered(connect_delay=2.4), 2.4)
    out = drv.send(d.ChargingAnswered(ok=True, granted=granted, final=final))
    assert of(out, d.Bridge)


# ------------------------------------------------------------------ PIN


def test_access_number_answers_and_asks_for_pin_in_default_language():
    drv = Driver()
    out = offer_access(drv)
    play = of(out, d.Play)[0]
    assert play.language == "FR"
    assert play.prompts == (d.P_WELCOME, d.P_ENTER_PIN)
    # the digit timer starts once the prompt has been heard
    assert drv.finish_prompt() == [d.StartTimer(d.T_DIGIT, 8.0)]


def test_pin_by_hash_then_credit_announced_in_account_language():
    drv = Driver()
    out = login(drv)
    play = of(out, d.Play)[0]
    assert play.language == "EN"
    # money only: the time it buys depends on the destination (told once dialled)
    assert play.prompts == (
        "your_credit_is", "twenty-three", "euros", "and", "fifty-eight", "cents",
        d.P_ENTER_DEST,
    )  # fmt: skip


def test_pin_ends_at_max_digits_without_hash():
    drv = Driver(d.DialogConfig(pin_max_digits=4))
    offer_access(drv)
    out = drv.digits("1234")
    assert of(out, d.LookupPin) == [d.LookupPin("1234")]


def test_pin_ends_at_inter_digit_timeout():
    drv = Driver()
    offer_access(drv)
    drv.finish_prompt()
    out = drv.digits("12")
    assert out[-1] == d.StartTimer(d.T_DIGIT, 4.0)
    out = drv.send(d.TimerExpired(d.T_DIGIT), 4.0)
    assert out == [d.LookupPin("12")]


def test_digit_during_prompt_barges_in():
    drv = Driver()
    offer_access(drv)
    out = drv.send(d.DigitReceived("1"))
    assert out[0] == d.StopPlay()
    # the finish of the stopped prompt is ignored
    assert drv.send(d.PromptFinished(drv.last_play().play_id)) == []


def test_star_is_ignored_in_pin():
    drv = Driver()
    offer_access(drv)
    out = drv.digits("1*2#")
    assert of(out, d.LookupPin) == [d.LookupPin("12")]


def test_wrong_pin_three_times_plays_message_and_hangs_up():
    drv = Driver()
    offer_access(drv)
    for attempt in range(1, 4):
        drv.finish_prompt()
        out = pin_failure(drv)
        play = of(out, d.Play)[0]
        if attempt < 3:
            assert play.prompts == (d.P_WRONG_PIN, d.P_ENTER_PIN)
            assert not of(out, d.Hangup)
    assert play.prompts == (d.P_WRONG_PIN, d.P_TOO_MANY, d.P_GOODBYE)
    out = drv.finish_prompt()
    assert out == [d.Hangup(d.EndReason.PIN_FAILED), d.Finished(d.EndReason.PIN_FAILED)]
    # a dead dialog ignores everything
    assert drv.send(d.DigitReceived("1")) == []


def test_pin_timeout_without_digits_counts_as_a_try():
    drv = Driver(d.DialogConfig(max_pin_tries=2))
    offer_access(drv)
    drv.finish_prompt()
    out = drv.send(d.TimerExpired(d.T_DIGIT), 8.0)
    assert not of(out, d.RecordFailure)  # an empty entry is not a guess
    assert of(out, d.Play)[0].prompts == (d.P_WRONG_PIN, d.P_ENTER_PIN)
    drv.finish_prompt()
    out = drv.send(d.TimerExpired(d.T_DIGIT), 8.0)
    assert of(out, d.Play)[0].prompts[-2:] == (d.P_TOO_MANY, d.P_GOODBYE)


def test_a_failure_that_reaches_the_limit_locks_out_and_hangs_up():
    drv = Driver()
    offer_access(drv)
    drv.finish_prompt()
    out = pin_failure(drv, locked=True)
    assert of(out, d.Play)[0].prompts == (d.P_WRONG_PIN, d.P_LOCKED, d.P_GOODBYE)
    assert drv.finish_prompt()[0] == d.Hangup(d.EndReason.LOCKED_OUT)


def test_a_locked_caller_hears_the_message_without_any_pin_prompt():
    drv = Driver()
    drv.send(d.CallOffered("0611223344", "6000"))
    drv.send(d.CallerLookedUp(None))
    out = drv.send(d.LockoutChecked(True))
    assert of(out, d.Play)[0].prompts == (d.P_LOCKED, d.P_GOODBYE)
    assert drv.finish_prompt()[0] == d.Hangup(d.EndReason.LOCKED_OUT)
    assert drv.send(d.DigitReceived("1")) == []


def test_no_credit_after_pin_offers_a_voucher_then_gives_up():
    drv = Driver()
    out = login(drv, BROKE)
    play = of(out, d.Play)[0]
    assert play.language == "FR"
    # told, and offered a voucher recharge instead of being hung up on
    assert play.prompts == ("your_credit_is", "zéro", "euro", d.P_NO_CREDIT, d.P_VOUCHER_MENU)
    assert not of(out, d.Hangup)
    for _ in range(2):
        drv.finish_prompt()
        out = drv.send(d.TimerExpired(d.T_DIGIT), 8.0)
        assert of(out, d.Play)[0].prompts == (d.P_VOUCHER_MENU,)
    drv.finish_prompt()
    out = drv.send(d.TimerExpired(d.T_DIGIT), 8.0)
    assert of(out, d.Play)[0].prompts == (d.P_GOODBYE,)
    assert drv.finish_prompt()[0] == d.Hangup(d.EndReason.NO_CREDIT)


# ------------------------------------------------------------------ destination


def test_destination_checked_then_connected():
    drv = Driver()
    login(drv)
    out = dial(drv)
    assert of(out, d.CheckDestination) == [
        d.CheckDestination(ALICE, "0141587070", d.SubscriberKind.ACCOUNT, "0611223344")
    ]
    out = drv.send(d.DestinationChecked(d.DestinationStatus.OK, 600))
    assert of(out, d.Connect) == [d.Connect("0141587070")]
    # the time the credit buys at this destination's tariff, then "connecting"
    assert of(out, d.Play)[0].prompts == (
        d.P_YOU_HAVE, "ten", "minutes", d.P_FOR_THIS_CALL, d.P_CONNECTING,
    )  # fmt: skip
    assert d.StartTimer(d.T_RING, 60.0) in out


def test_destination_ends_on_inter_digit_timeout():
    drv = Driver()
    login(drv)
    drv.finish_prompt()
    drv.digits("0141")
    out = drv.send(d.TimerExpired(d.T_DIGIT), 4.0)
    assert of(out, d.CheckDestination)[0].destination == "0141"


def test_barred_destination_is_told_and_reprompted():
    drv = Driver()
    login(drv)
    dial(drv, "0899")
    out = drv.send(d.DestinationChecked(d.DestinationStatus.BARRED))
    assert of(out, d.Play)[0].prompts == (d.P_BARRED, d.P_ENTER_DEST)
    out = dial(drv, "0141587070")
    assert of(out, d.CheckDestination)[0].destination == "0141587070"


def test_unaffordable_destination_is_told_and_reprompted():
    drv = Driver()
    login(drv)
    dial(drv, "0044")
    out = drv.send(d.DestinationChecked(d.DestinationStatus.NO_CREDIT))
    # told how to top up (star then two), then asked again
    assert of(out, d.Play)[0].prompts == (d.P_INSUFFICIENT, d.P_VOUCHER_MENU, d.P_ENTER_DEST)
    dial(drv, "0045")
    out = drv.send(d.DestinationChecked(d.DestinationStatus.OK, affordable_seconds=0))
    assert of(out, d.Play)[0].prompts == (d.P_INSUFFICIENT, d.P_VOUCHER_MENU, d.P_ENTER_DEST)
    dial(drv, "0046")
    out = drv.send(d.DestinationChecked(d.DestinationStatus.NO_CREDIT))
    # the last try: told, goodbye (no menu any more)
    assert of(out, d.Play)[0].prompts == (d.P_INSUFFICIENT, d.P_GOODBYE)
    assert drv.finish_prompt()[0] == d.Hangup(d.EndReason.NO_DESTINATION)


def test_invalid_destination_reprompted_then_gives_up():
    drv = Driver()
    login(drv)
    for _ in range(2):
        dial(drv, "1")
        out = drv.send(d.DestinationChecked(d.DestinationStatus.INVALID))
        assert of(out, d.Play)[0].prompts == (d.P_INVALID, d.P_ENTER_DEST)
    dial(drv, "1")
    out = drv.send(d.DestinationChecked(d.DestinationStatus.INVALID))
    assert of(out, d.Play)[0].prompts == (d.P_INVALID, d.P_GOODBYE)
    assert drv.finish_prompt()[0] == d.Hangup(d.EndReason.NO_DESTINATION)


def test_destination_timeout_without_digits_reprompts():
    drv = Driver()
    login(drv)
    drv.finish_prompt()
    out = drv.send(d.TimerExpired(d.T_DIGIT), 8.0)
    assert of(out, d.Play)[0].prompts == (d.P_ENTER_DEST,)


def test_far_end_failure_tells_caller_and_hangs_up():
    drv = Driver(d.DialogConfig(another_call=False))
    login(drv)
    dial(drv)
    drv.send(d.DestinationChecked(d.DestinationStatus.OK, 600))
    out = drv.send(d.FarEndFailed("server error", 500, d.CalleeFailure.FAILED))
    assert of(out, d.Play)[0].prompts == (d.P_CALL_FAILED, d.P_GOODBYE)
    assert not of(out, d.ChargeStart)
    assert drv.finish_prompt()[0] == d.Hangup(d.EndReason.CALL_FAILED)


def test_far_end_not_answering_is_cancelled():
    drv = Driver()
    login(drv)
    dial(drv)
    drv.send(d.DestinationChecked(d.DestinationStatus.OK, 600))
    out = drv.send(d.TimerExpired(d.T_RING), 60)
    assert out[0] == d.ReleaseCallee()
    assert of(out, d.Play)[0].prompts == (d.P_NO_ANSWER, d.P_ANOTHER_CALL)


# ------------------------------------------------------------------ charging


def test_answer_starts_charging_with_connect_delay_then_bridges():
    drv = Driver()
    login(drv)
    dial(drv)
    drv.send(d.DestinationChecked(d.DestinationStatus.OK, 600))
    out = drv.send(d.FarEndAnswered(connect_delay=2.4), 2.4)
    assert of(out, d.ChargeStart) == [
        d.ChargeStart(ALICE, d.SubscriberKind.ACCOUNT, "0611223344", "0141587070", 2)
    ]
    assert not of(out, d.Bridge)  # no media before the OCS granted
    out = drv.send(d.ChargingAnswered(ok=True, granted=60))
    assert of(out, d.Bridge)
    assert d.StartTimer(d.T_QUOTA, 55.0) in out


def test_updates_before_grant_used_and_exact_seconds_at_hangup():
    drv = Driver()
    connected(drv, granted=60)
    out = drv.send(d.TimerExpired(d.T_QUOTA), 55.0)
    assert of(out, d.ChargeUpdate) == [d.ChargeUpdate(55)]
    out = drv.send(d.ChargingAnswered(ok=True, granted=60))
    assert d.StartTimer(d.T_QUOTA, 55.0) in out
    out = drv.send(d.CallerHungUp(), 17.3)  # 72.3 s after answer
    assert out.count(d.ReleaseCallee()) == 1
    assert of(out, d.ChargeStop) == [d.ChargeStop(17, d.TerminationCause.LOGOUT)]
    assert drv.dialog.charged_seconds == 72
    assert out[-1] == d.Finished(d.EndReason.CALLER_HANGUP)


def test_callee_hangup_stops_charging_and_hangs_up_caller():
    drv = Driver(d.DialogConfig(another_call=False))
    connected(drv)
    out = drv.send(d.CalleeHungUp(), 13.0)
    assert of(out, d.ChargeStop) == [d.ChargeStop(13)]
    assert of(out, d.Hangup) == [d.Hangup(d.EndReason.CALLEE_HANGUP)]
    assert not of(out, d.ReleaseCallee)


def test_final_units_cut_off_with_announcement():
    drv = Driver()
    connected(drv, granted=30, final=True)
    assert d.StartTimer(d.T_CUTOFF, 30.0) in drv.log
    out = drv.send(d.TimerExpired(d.T_CUTOFF), 30.0)
    assert out[0] == d.Unbridge()  # the conversation stops at once ...
    # ... the CCR-T says why (RFC 6733 DIAMETER_AUTH_EXPIRED, not LOGOUT) ...
    assert of(out, d.ChargeStop) == [d.ChargeStop(30, d.TerminationCause.AUTH_EXPIRED)]
    # ... and both parties hear the announcement before their legs are released
    caller, callee = of(out, d.Play)
    assert (caller.leg, caller.prompts) == (d.Leg.CALLER, (d.P_EXHAUSTED, d.P_GOODBYE))
    assert (callee.leg, callee.prompts) == (d.Leg.CALLEE, (d.P_EXHAUSTED,))
    assert not of(out, d.Hangup) and not of(out, d.ReleaseCallee)
    out = drv.finish_prompt()
    assert out == [
        d.Hangup(d.EndReason.CREDIT_EXHAUSTED),
        d.Finished(d.EndReason.CREDIT_EXHAUSTED),
    ]


def test_update_refused_cuts_off():
    drv = Driver()
    connected(drv, granted=60)
    drv.send(d.TimerExpired(d.T_QUOTA), 55.0)
    out = drv.send(d.ChargingAnswered(ok=False, result_code=4012), 0.1)
    assert d.Unbridge() in out
    assert of(out, d.ChargeStop) == [d.ChargeStop(0, d.TerminationCause.AUTH_EXPIRED)]
    assert of(out, d.Play)[0].prompts == (d.P_EXHAUSTED, d.P_GOODBYE)


def test_initial_refused_releases_far_end_and_tells_caller():
    drv = Driver()
    login(drv)
    dial(drv)
    drv.send(d.DestinationChecked(d.DestinationStatus.OK, 600))
    drv.send(d.FarEndAnswered(1.0), 1.0)
    out = drv.send(d.ChargingAnswered(ok=False, result_code=4012))
    assert d.ReleaseCallee() in out
    assert not of(out, d.Bridge)
    assert of(out, d.ChargeStop) == [d.ChargeStop(0)]
    assert of(out, d.Play)[0].prompts == (d.P_NO_CREDIT, d.P_GOODBYE)


def test_ocs_silent_is_a_service_error():
    drv = Driver()
    login(drv)
    dial(drv)
    drv.send(d.DestinationChecked(d.DestinationStatus.OK, 600))
    drv.send(d.FarEndAnswered(1.0), 1.0)
    out = drv.send(d.TimerExpired(d.T_CHARGING), 10.0)
    assert d.ReleaseCallee() in out
    assert of(out, d.ChargeStop)[0].cause is d.TerminationCause.BAD_ANSWER
    assert of(out, d.Play)[0].prompts == (d.P_SERVICE_ERROR, d.P_GOODBYE)


def test_caller_hangup_while_ringing_cancels_far_end_without_charging():
    drv = Driver()
    login(drv)
    dial(drv)
    drv.send(d.DestinationChecked(d.DestinationStatus.OK, 600))
    out = drv.send(d.CallerHungUp(), 3.0)
    assert d.ReleaseCallee() in out
    assert not of(out, d.ChargeStop)
    assert out[-1] == d.Finished(d.EndReason.CALLER_HANGUP)


def test_caller_hangup_in_menu_just_ends():
    drv = Driver()
    offer_access(drv)
    out = drv.send(d.CallerHungUp())
    assert not of(out, d.ReleaseCallee)
    assert not of(out, d.Hangup)
    assert out[-1] == d.Finished(d.EndReason.CALLER_HANGUP)


# ------------------------------------------------------------------ one-step


def test_one_step_hit_connects_without_prompt_and_charges_caller():
    drv = Driver()
    out = drv.send(d.CallOffered("0611223344", "0561500001"))
    assert out == [d.LookupCaller("0611223344")]
    out = drv.send(d.CallerLookedUp(ALICE))
    assert out == [d.LookupDid(1, "0561500001")]
    out = drv.send(d.DidLookedUp("0141587070"))
    assert out == [d.CheckDestination(ALICE, "0141587070", d.SubscriberKind.E164, "0611223344")]
    out = drv.send(d.DestinationChecked(d.DestinationStatus.OK, 600))
    assert of(out, d.Connect) == [d.Connect("0141587070")]
    assert of(out, d.Ringing) == [d.Ringing()]  # 180 to the caller while it rings
    assert not of(out, d.Play) and not of(out, d.Answer)
    out = drv.send(d.FarEndAnswered(3.0), 3.0)
    assert of(out, d.ChargeStart)[0].subscriber is d.SubscriberKind.E164
    out = drv.send(d.ChargingAnswered(ok=True, granted=120))
    assert of(out, d.Answer) and of(out, d.Bridge)
    assert not [c for c in drv.log if isinstance(c, d.Play)]
    out = drv.send(d.CallerHungUp(), 65.0)
    assert of(out, d.ChargeStop) == [d.ChargeStop(65)]


def test_one_step_unknown_caller_is_rejected():
    drv = Driver()
    drv.send(d.CallOffered("0699999999", "0561500001"))
    out = drv.send(d.CallerLookedUp(None))
    assert out == [d.Reject(404, "Not Found"), d.Finished(d.EndReason.NOT_FOUND)]


def test_one_step_unknown_did_is_rejected():
    drv = Driver()
    drv.send(d.CallOffered("0611223344", "0561509999"))
    drv.send(d.CallerLookedUp(ALICE))
    out = drv.send(d.DidLookedUp(None))
    assert out == [d.Reject(404, "Not Found"), d.Finished(d.EndReason.NOT_FOUND)]


def test_one_step_far_end_failure_rejects_caller():
    drv = Driver()
    drv.send(d.CallOffered("0611223344", "0561500001"))
    drv.send(d.CallerLookedUp(ALICE))
    drv.send(d.DidLookedUp("0141587070"))
    drv.send(d.DestinationChecked(d.DestinationStatus.OK, 600))
    out = drv.send(d.FarEndFailed("busy", 486))
    assert of(out, d.Reject) == [d.Reject(486, "Busy Here")]  # relayed, not generic


@pytest.mark.parametrize(
    ("status", "prompt"),
    [
        (d.DestinationStatus.NO_CREDIT, d.P_INSUFFICIENT),
        (d.DestinationStatus.BARRED, d.P_BARRED),
    ],
)
def test_one_step_refused_destination_answers_tells_and_hangs_up(status, prompt):
    drv = Driver()
    drv.send(d.CallOffered("0611223344", "0561500001"))
    drv.send(d.CallerLookedUp(ALICE))
    drv.send(d.DidLookedUp("0141587070"))
    out = drv.send(d.DestinationChecked(status))
    assert out[0] == d.Answer()
    assert of(out, d.Play)[0].prompts == (prompt, d.P_GOODBYE)
    assert of(out, d.Play)[0].language == "EN"
    assert drv.finish_prompt()[0].__class__ is d.Hangup


def test_one_step_final_units_cut_off():
    drv = Driver()
    drv.send(d.CallOffered("0611223344", "0561500001"))
    drv.send(d.CallerLookedUp(ALICE))
    drv.send(d.DidLookedUp("0141587070"))
    drv.send(d.DestinationChecked(d.DestinationStatus.OK, 20))
    drv.send(d.FarEndAnswered(1.0), 1.0)
    drv.send(d.ChargingAnswered(ok=True, granted=20, final=True))
    out = drv.send(d.TimerExpired(d.T_CUTOFF), 20.0)
    assert of(out, d.ChargeStop) == [d.ChargeStop(20, d.TerminationCause.AUTH_EXPIRED)]
    assert of(out, d.Play)[0].prompts == (d.P_EXHAUSTED, d.P_GOODBYE)


def test_late_and_unrelated_events_are_ignored():
    drv = Driver()
    assert drv.send(d.DigitReceived("1")) == []
    offer_access(drv)
    assert drv.send(d.FarEndAnswered(1.0)) == []
    assert drv.send(d.TimerExpired("other")) == []
    assert drv.send(d.PromptFinished(999)) == []


def test_operator_abort_asr_releases_both_legs():
    drv = Driver()
    connected(drv)
    out = drv.send(d.ChargingAborted(), 20.0)
    assert out[0] == d.ReleaseCallee()
    assert of(out, d.ChargeStop) == [d.ChargeStop(20, d.TerminationCause.ADMINISTRATIVE)]
    assert of(out, d.Play)[0].prompts == (d.P_GOODBYE,)
    assert drv.finish_prompt()[0] == d.Hangup(d.EndReason.ABORTED)


def test_reauth_rar_reports_usage_now_and_lifts_final_units():
    drv = Driver()
    connected(drv, granted=10, final=True)
    out = drv.send(d.ReauthRequested(), 4.0)
    assert of(out, d.ChargeUpdate) == [d.ChargeUpdate(4)]
    # a RAR while that CCR-U is in flight is absorbed
    assert drv.send(d.ReauthRequested(), 0.1) == []
    out = drv.send(d.ChargingAnswered(ok=True, granted=60))  # topped up: not final any more
    assert d.CancelTimer(d.T_CUTOFF) in out
    assert d.StartTimer(d.T_QUOTA, 55.0) in out
    assert drv.dialog.final_units is False


def test_exact_seconds_sum_over_updates():
    drv = Driver()
    connected(drv, granted=30)
    total = 0
    for _ in range(4):
        out = drv.send(d.TimerExpired(d.T_QUOTA), 25.4)
        total += of(out, d.ChargeUpdate)[0].used
        drv.send(d.ChargingAnswered(ok=True, granted=30))
    out = drv.send(d.CallerHungUp(), 3.0)
    total += of(out, d.ChargeStop)[0].used
    assert total == round(4 * 25.4 + 3.0)
