"""Voucher recharge by phone in the dialog, without sockets: star then two at the destination
question, the lockout checked first, the code collected and handed to the redemption rule,
each outcome (recharged, invalid, used, expired, platform error), a refused code recorded
like a wrong PIN, and the service log with the code masked."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import pytest

from ivr_bridge import dialog as d
from ivr_bridge.servicelog import step_line
from tests.unit.test_ivr_dialog import ALICE, BROKE, Driver, login, of

CALLER = "0611223344"
CODE = "4929123456789017"
TOPPED_UP = replace(ALICE, available_units=285800, credit_money=Decimal("28.58"))


def at_destination(drv: Driver, account: d.AccountInfo = ALICE) -> None:
    login(drv, account)
    drv.finish_prompt()


def voucher_prompt(drv: Driver, account: d.AccountInfo = ALICE) -> list[d.Command]:
    """Logged in, "*2", not locked out: asked for the code."""
    at_destination(drv, account)
    assert drv.digits("*2")[-1] == d.CheckLockout(CALLER)
    return drv.send(d.LockoutChecked(False))


def enter_code(drv: Driver, code: str = CODE) -> list[d.Command]:
    drv.finish_prompt()
    return drv.digits(code + "#")


def refused(drv: Driver, result: d.VoucherResult) -> list[d.Command]:
    enter_code(drv)
    out = drv.send(d.VoucherRedeemed(result))
    assert out == [d.RecordFailure(CALLER, "voucher")]
    return out


# ------------------------------------------------------------------ entry


def test_star_two_at_the_destination_question_checks_the_lockout_first():
    drv = Driver()
    at_destination(drv)
    out = drv.digits("*")
    assert not of(out, d.CheckLockout)
    out = drv.send(d.DigitReceived("2"))
    assert out == [d.CancelTimer(d.T_DIGIT), d.CheckLockout(CALLER)]
    assert drv.dialog.state is d.State.VOUCHER_LOCKOUT
    assert drv.send(d.DigitReceived("5")) == []  # nothing is collected meanwhile
    out = drv.send(d.LockoutChecked(False))
    play = of(out, d.Play)[0]
    assert (play.language, play.prompts) == ("EN", (d.P_VOUCHER_ENTER,))  # the account's
    assert drv.dialog.state is d.State.VOUCHER
    assert drv.finish_prompt() == [d.StartTimer(d.T_DIGIT, 8.0)]


def test_star_two_barges_in_on_the_credit_prompt():
    drv = Driver()
    login(drv)  # the credit announcement is still playing
    out = drv.digits("*2")
    assert d.StopPlay() in out and out[-1] == d.CheckLockout(CALLER)


def test_star_hash_still_redials():
    drv = Driver()
    login(drv, replace(ALICE, last_dialed="0561500001"))
    drv.finish_prompt()
    out = drv.digits("*#")
    assert of(out, d.CheckDestination)[0].destination == "0561500001"
    assert not of(out, d.CheckLockout)


def test_a_locked_out_caller_may_not_try_a_code():
    drv = Driver()
    at_destination(drv)
    drv.digits("*2")
    out = drv.send(d.LockoutChecked(True))
    assert of(out, d.Play)[0].prompts == (d.P_LOCKED, d.P_GOODBYE)
    assert drv.send(d.DigitReceived("1")) == []
    assert drv.finish_prompt()[0] == d.Hangup(d.EndReason.LOCKED_OUT)


def test_no_credit_offers_the_voucher_and_star_two_takes_it():
    drv = Driver()
    out = login(drv, BROKE)
    assert of(out, d.Play)[0].prompts[-2:] == (d.P_NO_CREDIT, d.P_VOUCHER_MENU)
    drv.finish_prompt()
    assert drv.digits("*2")[-1] == d.CheckLockout(CALLER)


def test_dialling_without_credit_is_told_and_offered_the_voucher_again():
    drv = Driver()
    login(drv, BROKE)
    drv.finish_prompt()
    drv.digits("0141587070#")
    out = drv.send(d.DestinationChecked(d.DestinationStatus.NO_CREDIT, 0))
    assert of(out, d.Play)[0].prompts == (d.P_INSUFFICIENT, d.P_VOUCHER_MENU)


def test_voucher_offered_at_the_another_call_prompt_too():
    drv = Driver()
    login(drv)
    drv.finish_prompt()
    drv.digits("0141587070#")
    drv.send(d.DestinationChecked(d.DestinationStatus.OK, 600))
    drv.send(d.FarEndAnswered(1.0), 1.0)
    drv.send(d.ChargingAnswered(ok=True, granted=60))
    drv.send(d.CalleeHungUp(), 5.0)
    drv.send(d.AccountRefreshed(ALICE))
    drv.finish_prompt()
    assert drv.digits("*2")[-1] == d.CheckLockout(CALLER)


# ------------------------------------------------------------------ the code


def test_the_code_ends_with_hash_and_goes_to_the_redemption_rule():
    drv = Driver()
    voucher_prompt(drv)
    out = enter_code(drv)
    # 16 digits do not end the entry by themselves: the "#" the caller types next would
    # otherwise be left over for the next question
    assert of(out, d.RedeemVoucher) == [d.RedeemVoucher(CODE, ALICE, CALLER)]
    assert out[-1] == d.RedeemVoucher(CODE, ALICE, CALLER)
    assert drv.dialog.state is d.State.REDEEM_VOUCHER
    assert drv.send(d.DigitReceived("#")) == []


def test_the_code_ends_on_the_inter_digit_timeout_and_at_the_cap():
    drv = Driver()
    voucher_prompt(drv)
    drv.finish_prompt()
    drv.digits("1234")
    out = drv.send(d.TimerExpired(d.T_DIGIT), 4.0)
    assert of(out, d.RedeemVoucher) == [d.RedeemVoucher("1234", ALICE, CALLER)]
    drv = Driver(d.DialogConfig(voucher_max_digits=20))
    voucher_prompt(drv)
    drv.finish_prompt()
    out = drv.digits("1" * 20)
    assert of(out, d.RedeemVoucher) == [d.RedeemVoucher("1" * 20, ALICE, CALLER)]


def test_stars_in_the_code_are_ignored():
    drv = Driver()
    voucher_prompt(drv)
    out = enter_code(drv, "4929*1234567890*17")
    assert of(out, d.RedeemVoucher)[0].code == CODE


def test_no_code_goes_back_to_the_destination_question():
    drv = Driver()
    voucher_prompt(drv)
    drv.finish_prompt()
    out = drv.send(d.DigitReceived("#"))
    assert of(out, d.Play)[0].prompts == (d.P_ENTER_DEST,)
    assert drv.dialog.state is d.State.DESTINATION
    assert drv.dialog.destination_tries == 1  # bounded: "*2" then silence cannot loop forever


# ------------------------------------------------------------------ outcomes


def test_recharged_announces_the_new_credit_then_asks_the_number():
    drv = Driver()
    voucher_prompt(drv)
    enter_code(drv)
    drv.dialog.destination_tries = 2
    out = drv.send(d.VoucherRedeemed(d.VoucherResult.OK, TOPPED_UP))
    play = of(out, d.Play)[0]
    assert play.prompts == (
        d.P_VOUCHER_DONE,
        "your_credit_is", "twenty-eight", "euros", "and", "fifty-eight", "cents",
        d.P_ENTER_DEST,
    )  # fmt: skip
    assert not of(out, d.RecordFailure)
    assert drv.dialog.state is d.State.DESTINATION
    assert drv.dialog.destination_tries == 0
    drv.finish_prompt()
    out = drv.digits("0141587070#")
    # the call that follows uses the new credit
    assert of(out, d.CheckDestination)[0].account == TOPPED_UP


def test_recharged_from_no_credit_then_calls():
    drv = Driver()
    voucher_prompt(drv, BROKE)
    enter_code(drv)
    five = replace(BROKE, available_units=50000, credit_money=Decimal("5"))
    out = drv.send(d.VoucherRedeemed(d.VoucherResult.OK, five))
    play = of(out, d.Play)[0]
    assert play.language == "FR"
    assert play.prompts == (d.P_VOUCHER_DONE, "your_credit_is", "cinq", "euros", d.P_ENTER_DEST)


@pytest.mark.parametrize(
    ("result", "prompt"),
    [
        (d.VoucherResult.INVALID, d.P_VOUCHER_INVALID),
        (d.VoucherResult.USED, d.P_VOUCHER_USED),
        (d.VoucherResult.EXPIRED, d.P_VOUCHER_EXPIRED),
    ],
)
def test_a_refused_code_is_recorded_like_a_wrong_pin_then_told(result, prompt):
    drv = Driver()
    voucher_prompt(drv)
    refused(drv, result)  # recorded before the caller hears anything
    assert drv.dialog.state is d.State.VOUCHER_FAILURE
    assert drv.send(d.DigitReceived("1")) == []
    out = drv.send(d.FailureRecorded(False))
    assert of(out, d.Play)[0].prompts == (prompt, d.P_VOUCHER_ENTER)
    assert drv.dialog.state is d.State.VOUCHER
    out = enter_code(drv)
    assert of(out, d.RedeemVoucher)  # another try


def test_a_refused_code_that_reaches_the_limit_locks_out():
    drv = Driver()
    voucher_prompt(drv)
    refused(drv, d.VoucherResult.USED)
    out = drv.send(d.FailureRecorded(True))
    assert of(out, d.Play)[0].prompts == (d.P_VOUCHER_USED, d.P_LOCKED, d.P_GOODBYE)
    assert drv.finish_prompt()[0] == d.Hangup(d.EndReason.LOCKED_OUT)


def test_three_refused_codes_in_one_call_end_it():
    drv = Driver()
    voucher_prompt(drv)
    for _ in range(2):
        refused(drv, d.VoucherResult.INVALID)
        drv.send(d.FailureRecorded(False))
    refused(drv, d.VoucherResult.EXPIRED)
    out = drv.send(d.FailureRecorded(False))
    assert of(out, d.Play)[0].prompts == (d.P_VOUCHER_EXPIRED, d.P_TOO_MANY, d.P_GOODBYE)
    assert drv.finish_prompt()[0] == d.Hangup(d.EndReason.VOUCHER_FAILED)


def test_a_success_does_not_reset_the_refused_count():
    drv = Driver()
    voucher_prompt(drv)
    for _ in range(2):
        refused(drv, d.VoucherResult.INVALID)
        drv.send(d.FailureRecorded(False))
    enter_code(drv)
    drv.send(d.VoucherRedeemed(d.VoucherResult.OK, TOPPED_UP))
    drv.finish_prompt()
    drv.digits("*2")
    drv.send(d.LockoutChecked(False))
    refused(drv, d.VoucherResult.USED)
    out = drv.send(d.FailureRecorded(False))
    assert of(out, d.Play)[0].prompts == (d.P_VOUCHER_USED, d.P_TOO_MANY, d.P_GOODBYE)


def test_a_platform_error_is_a_service_error():
    drv = Driver()
    voucher_prompt(drv)
    enter_code(drv)
    out = drv.send(d.VoucherRedeemed(d.VoucherResult.ERROR))
    assert not of(out, d.RecordFailure)  # not the caller's fault
    assert of(out, d.Play)[0].prompts == (d.P_SERVICE_ERROR, d.P_GOODBYE)
    assert drv.finish_prompt()[0] == d.Hangup(d.EndReason.SERVICE_ERROR)


def test_credited_but_not_read_back_says_so_and_ends():
    drv = Driver()
    voucher_prompt(drv)
    enter_code(drv)
    out = drv.send(d.VoucherRedeemed(d.VoucherResult.OK, None))
    assert of(out, d.Play)[0].prompts == (d.P_VOUCHER_DONE, d.P_SERVICE_ERROR, d.P_GOODBYE)


def test_caller_hangs_up_during_the_redemption():
    drv = Driver()
    voucher_prompt(drv)
    enter_code(drv)
    out = drv.send(d.CallerHungUp())
    assert out[-1] == d.Finished(d.EndReason.CALLER_HANGUP)
    assert drv.send(d.VoucherRedeemed(d.VoucherResult.OK, TOPPED_UP)) == []  # late answer


# ------------------------------------------------------------------ service log


def test_service_log_masks_the_voucher_code():
    drv = Driver()
    voucher_prompt(drv)
    drv.finish_prompt()
    lines = []
    for ch in CODE + "#":
        event = d.DigitReceived(ch)
        line = step_line(len(lines) + 1, event, drv.send(event), drv.dialog.state)
        if line is not None:
            lines.append(line)
    event2 = d.VoucherRedeemed(d.VoucherResult.OK, TOPPED_UP)
    line = step_line(len(lines) + 1, event2, drv.send(event2), drv.dialog.state)
    assert line is not None
    lines.append(line)
    assert CODE not in repr(lines)
    assert lines[0]["actions"] == [{"do": "redeem_voucher", "code": "*" * 16, "account": "1001"}]
    assert lines[0]["state"] == "redeem_voucher"
    assert lines[1]["event"] == {
        "type": "voucher_result", "result": "ok", "account": "1001", "available": 285800,
    }  # fmt: skip
    refusal = d.VoucherRedeemed(d.VoucherResult.USED)
    drv = Driver()
    voucher_prompt(drv)
    enter_code(drv)
    line = step_line(1, refusal, drv.send(refusal), drv.dialog.state)
    assert line == {
        "step": 1,
        "event": {"type": "voucher_result", "result": "used"},
        "actions": [{"do": "record_failure", "caller": CALLER, "kind": "voucher"}],
        "state": "voucher_failure",
    }
