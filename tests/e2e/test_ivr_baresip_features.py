"""Issue 11 end to end: Debian's baresip UAs call the IVR bridge, which charges over real
Diameter through the OCS (same set-up as tests/e2e/test_ivr_baresip.py).

Pacing: digits are sent once the dialog has finished the prompt that asks for them (polled
on the bridge), so barge-in never cuts a prompt the recording is checked against. Timings the
issue asks for (warning lead, ring timeout, fail-fast) are read from the recording and from
the bridge's service log, with tolerances far above scheduling noise.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from ivr_bridge import dialog as d
from ivr_bridge.service import IvrBridge
from ocs.config import Settings
from tests.conftest import unavailable
from tests.e2e.ivr_baresip import BARESIP, Baresip, read_wav, sound_segments, tone_frames
from tests.e2e.test_ivr_baresip import (
    RATE_DEFAULT,
    TONE,
    Platform,
    account_state,
    make_account,
    prompt_seconds,
)

pytestmark = pytest.mark.sip

RINGBACK_HZ = 440  # also the tone baresip's caller sends (its ausine source)
WARNING_HZ = 1400
FRAME = 0.02


# ------------------------------------------------------------------ harness


@pytest.fixture
def bridges(monkeypatch: pytest.MonkeyPatch) -> list[IvrBridge]:
    """Every IvrBridge the platform starts, so tests can wait on the dialog's state."""
    started: list[IvrBridge] = []
    original = IvrBridge.start

    async def start(self: IvrBridge) -> None:
        started.append(self)
        await original(self)

    monkeypatch.setattr(IvrBridge, "start", start)
    return started


async def until(predicate: Callable[[], bool], timeout: float = 30, what: str = "") -> None:
    try:
        async with asyncio.timeout(timeout):
            while not predicate():
                await asyncio.sleep(0.02)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what or predicate}") from None


def dialog(bridge: IvrBridge) -> d.Dialog | None:
    calls = list(bridge.calls.values())
    return calls[-1].dialog if calls else None


async def prompt_heard(bridge: IvrBridge, state: d.State) -> None:
    """The dialog is collecting digits in `state` and its prompt has been played."""

    def ready() -> bool:
        dlg = dialog(bridge)
        return dlg is not None and dlg.state is state and dlg._playing is None

    await until(ready, what=f"prompt finished in {state}")


async def connected(bridge: IvrBridge) -> None:
    await until(
        lambda: (dlg := dialog(bridge)) is not None and dlg.state is d.State.CONNECTED,
        what="the call bridged after the grant",
    )


async def operator(**values: Any) -> None:
    from ocs import settings_store

    await settings_store.save_operator_settings(values)


async def make_ua(tmp: Path, name: str, user: str, **kw: Any) -> Baresip:
    ua = Baresip(tmp / name, user, **kw)
    await ua.start()
    return ua


@pytest.fixture
async def ua_factory(tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    if BARESIP is None:
        unavailable("baresip")
    made: list[Baresip] = []

    async def factory(name: str, user: str, **kw: Any) -> Baresip:
        ua = await make_ua(tmp_path, name, user, **kw)
        made.append(ua)
        return ua

    yield factory
    for ua in made:
        await ua.stop()


def last_recording(ua: Baresip) -> tuple[list[int], int]:
    return read_wav(ua.recordings()[-1])


def tone_times(samples: list[int], rate: int, hz: float) -> list[float]:
    return [n * FRAME for n, on in enumerate(tone_frames(samples, rate, hz)) if on]


def run_end(times: list[float], gap: float = 0.2) -> float:
    """End of the first run of tone frames (a later stray frame inside speech is ignored)."""
    end = times[0]
    for t in times[1:]:
        if t - end > gap:
            break
        end = t
    return end + FRAME


async def service_log(call_id: str | None = None) -> list[dict[str, Any]]:
    from ocs.models import IvrLogLine

    query = IvrLogLine.all() if call_id is None else IvrLogLine.filter(call_id=call_id)
    return [{"at": r.created_at, **r.line} for r in await query.order_by("id")]


async def stored_log(after: int = 0, timeout: float = 15) -> list[dict[str, Any]]:
    """The service log once the call that ended last has been stored: a call leaves
    `bridge.calls` before its log is written (in one insert, see servicelog_store), so wait
    for an `end` action among the lines after the first `after`."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        lines = await service_log()
        if any(a.get("do") == "end" for line in lines[after:] for a in line["actions"]):
            return lines
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"no stored end of call after line {after}: {lines[after:]}")
        await asyncio.sleep(0.05)


def line_with(lines: list[dict[str, Any]], test: Callable[[dict[str, Any]], bool]) -> dict:
    found = [line for line in lines if test(line)]
    assert found, lines
    return found[0]


def plays(line: dict[str, Any]) -> list[tuple[str, ...]]:
    return [tuple(a["prompts"]) for a in line["actions"] if a["do"] == "play"]


def seconds_between(a: datetime, b: datetime) -> float:
    return (b - a).total_seconds()


async def intro_then_dial(caller: Baresip, bridge: IvrBridge, number: str) -> None:
    """A registered caller ID on 6000: no PIN; wait for the credit prompt, dial."""
    await prompt_heard(bridge, d.State.DESTINATION)
    await caller.send_digits(number + "#", gap=0.15)


# ------------------------------------------------------------------ caller ID on 6000


async def test_registered_caller_on_6000_skips_the_pin(settings, tmp_path, ua_factory, bridges):
    callee = await ua_factory("callee", "0141587070", auto_answer=True, tone_hz=TONE)
    caller = await ua_factory("caller", "5173")  # a caller ID of account 1001
    async with Platform(settings, f"127.0.0.1:{callee.sip_port}") as platform:
        bridge = bridges[-1]
        await caller.dial(f"sip:6000@{platform.sip_uri_base}")
        await caller.wait_event("CALL_ESTABLISHED", 10)
        await intro_then_dial(caller, bridge, "0141587070")
        await callee.wait_event("CALL_ESTABLISHED", 15)
        await connected(bridge)
        await asyncio.sleep(3.0)  # talk
        await caller.hangup()
        await callee.wait_event("CALL_CLOSED", 10)
        await until(lambda: not bridge.calls, what="call finished")
        await asyncio.sleep(0.6)  # the charge worker sends the CCR-T
        balance, reserved, cdrs, calls = await account_state("1001")
        lines = await stored_log()

    samples, rate = last_recording(caller)
    intro = prompt_seconds(
        "FR", "welcome", "your_credit_is", "vingt-cinq", "euros", "enter_destination"
    )
    first = sound_segments(samples, rate)[0]
    assert first.length == pytest.approx(intro, abs=0.35)  # no PIN prompt, no PIN entered
    assert not [line for line in lines if line["state"] in ("pin", "lookup_pin")]
    assert len(cdrs) == 1 and cdrs[0].cost == cdrs[0].duration * RATE_DEFAULT
    assert [c.amount for c in calls] == [-cdrs[0].cost]
    assert balance == 250_000 - cdrs[0].cost and reserved == 0


async def test_anti_spoofing_asks_the_pin_of_a_registered_caller(
    settings: Settings, tmp_path: Path, ua_factory: Callable[..., Any], bridges: list
) -> None:
    callee = await ua_factory("callee", "0141587070", auto_answer=True, tone_hz=TONE)
    caller = await ua_factory("caller", "5173")
    async with Platform(settings, f"127.0.0.1:{callee.sip_port}") as platform:
        await operator(ivr_caller_pin_required=True)
        bridge = bridges[-1]
        await caller.dial(f"sip:6000@{platform.sip_uri_base}")
        await caller.wait_event("CALL_ESTABLISHED", 10)
        await prompt_heard(bridge, d.State.PIN)
        await caller.send_digits("1234#", gap=0.15)
        await intro_then_dial(caller, bridge, "0141587070")
        await callee.wait_event("CALL_ESTABLISHED", 15)
        await caller.hangup()
        await callee.wait_event("CALL_CLOSED", 10)
        await until(lambda: not bridge.calls, what="call finished")
        await asyncio.sleep(0.6)
        _, reserved, cdrs, _ = await account_state("1001")

    samples, rate = last_recording(caller)
    first = sound_segments(samples, rate)[0]
    assert first.length == pytest.approx(prompt_seconds("FR", "welcome", "enter_pin"), abs=0.35)
    assert len(cdrs) == 1 and reserved == 0


# ------------------------------------------------------------------ warned cut

_CUT: dict[str, Any] = {}


async def warned_cut(
    settings: Settings, tmp_path: Path, ua_factory: Callable[..., Any], bridges: list
) -> dict:
    """15 s of credit, warning 5 s before the cut (run once, shared by two tests)."""
    if _CUT:
        return _CUT
    callee = await ua_factory("callee", "0141587070", auto_answer=True, tone_hz=TONE)
    caller = await ua_factory("caller", "0699000001")
    async with Platform(settings, f"127.0.0.1:{callee.sip_port}") as platform:
        await operator(ivr_warning_seconds=5, ivr_warning_mode="both")
        await make_account("1004", "4444", 3000, language="EN")  # 15 s at 200 u/s
        bridge = bridges[-1]
        await caller.dial(f"sip:6000@{platform.sip_uri_base}")
        await caller.wait_event("CALL_ESTABLISHED", 10)
        await prompt_heard(bridge, d.State.PIN)
        await caller.send_digits("4444#", gap=0.15)
        await intro_then_dial(caller, bridge, "0141587070")
        await callee.wait_event("CALL_ESTABLISHED", 15)
        await caller.wait_event("CALL_CLOSED", 40)
        await callee.wait_event("CALL_CLOSED", 10)
        await until(lambda: not bridge.calls, what="call finished")
        await asyncio.sleep(0.6)
        _CUT["state"] = await account_state("1004")
        _CUT["lines"] = await stored_log()
    _CUT["caller"] = last_recording(caller)
    _CUT["callee"] = last_recording(callee)
    return _CUT


async def test_warning_before_the_cut_then_announcement_to_both(
    settings: Settings, tmp_path: Path, ua_factory: Callable[..., Any], bridges: list
) -> None:
    cut = await warned_cut(settings, tmp_path, ua_factory, bridges)
    samples, rate = cut["caller"]
    warning = tone_times(samples, rate, WARNING_HZ)
    talk = tone_times(samples, rate, TONE)
    assert warning, "no warning tone heard"
    cut_at = talk[-1] + FRAME  # the destination's tone stops at the cut
    # the warning starts 5 s (the configured lead) before the cut, within a second
    assert cut_at - warning[0] == pytest.approx(5.0, abs=1.0)
    # the caller then hears the announcement (and nothing else), and is hung up
    after = sound_segments(samples[int(cut_at * rate) :], rate)
    exhausted = prompt_seconds("EN", "credit_exhausted", "goodbye")
    assert len(after) == 1 and after[0].start < 0.3
    assert after[0].length == pytest.approx(exhausted, abs=0.5)
    # the destination hears the announcement too before its BYE (it was sending the
    # caller its 440 Hz tone until the cut)
    callee_samples, callee_rate = cut["callee"]
    caller_tone_end = run_end(tone_times(callee_samples, callee_rate, RINGBACK_HZ))
    heard = sound_segments(callee_samples[int(caller_tone_end * callee_rate) :], callee_rate)
    assert len(heard) == 1
    assert heard[0].length == pytest.approx(prompt_seconds("EN", "credit_exhausted"), abs=0.5)
    # charged exactly the 15 s the credit bought; CCR-T said why the call ended
    balance, reserved, cdrs, calls = cut["state"]
    assert [(c.duration, c.cost) for c in cdrs] == [(15, 3000)]
    assert [c.amount for c in calls] == [-3000]
    assert (balance, reserved) == (0, 0)
    ccr_t = line_with(
        cut["lines"],
        lambda line: any(a["do"] == "ccr_terminate" for a in line["actions"]),
    )
    assert {"do": "ccr_terminate", "used": 15, "termination_cause": 6} in ccr_t["actions"]
    assert cdrs[0].end_reason in ("AUTH_EXPIRED", "CREDIT_EXHAUSTED")  # not NORMAL


async def test_credit_cut_cdr_end_reason_is_credit_exhausted(
    settings: Settings, tmp_path: Path, ua_factory: Callable[..., Any], bridges: list
) -> None:
    cut = await warned_cut(settings, tmp_path, ua_factory, bridges)
    _, _, cdrs, _ = cut["state"]
    assert cdrs[0].end_reason == "CREDIT_EXHAUSTED"


# ------------------------------------------------------------------ DTMF relay


async def test_digits_after_connect_reach_the_destination(settings, tmp_path, ua_factory, bridges):
    callee = await ua_factory("callee", "0141587070", auto_answer=True, tone_hz=TONE)
    caller = await ua_factory("caller", "5173")
    async with Platform(settings, f"127.0.0.1:{callee.sip_port}") as platform:
        bridge = bridges[-1]
        await caller.dial(f"sip:0561500001@{platform.sip_uri_base}")  # one-step DID
        await callee.wait_event("CALL_ESTABLISHED", 10)
        await connected(bridge)
        await caller.send_digits("159#", gap=0.3)
        await until(
            lambda: [e.get("param") for e in callee.event_log
                     if e.get("type") == "CALL_DTMF_START"] == ["1", "5", "9", "#"],
            10, "the destination's DTMF events",
        )  # fmt: skip
        await caller.hangup()
        await callee.wait_event("CALL_CLOSED", 10)


# ------------------------------------------------------------------ progress


async def test_ringback_while_the_destination_rings(settings, tmp_path, ua_factory, bridges):
    callee = await ua_factory("callee", "0141587070", auto_answer=False, tone_hz=TONE)
    caller = await ua_factory("caller", "5173")
    async with Platform(settings, f"127.0.0.1:{callee.sip_port}") as platform:
        bridge = bridges[-1]
        await caller.dial(f"sip:6000@{platform.sip_uri_base}")
        await caller.wait_event("CALL_ESTABLISHED", 10)
        await intro_then_dial(caller, bridge, "0141587070")
        await callee.wait_event("CALL_INCOMING", 15)
        await until(lambda: (dlg := dialog(bridge)) is not None and dlg._ringback is not None)
        await asyncio.sleep(6.0)  # let it ring: more than one ringback cadence
        await callee.command("accept")
        await callee.wait_event("CALL_ESTABLISHED", 10)
        await connected(bridge)
        await asyncio.sleep(1.5)  # talk
        await caller.hangup()
        await callee.wait_event("CALL_CLOSED", 10)

    samples, rate = last_recording(caller)
    ringback = tone_times(samples, rate, RINGBACK_HZ)
    answered = tone_times(samples, rate, TONE)[0]
    assert ringback and ringback[-1] < answered
    # 1.5 s on / 3.5 s off: 6 s of ringing hold at least one full burst, less than 3.5 s
    assert 1.3 <= len(ringback) * FRAME <= 3.5


async def failing_call(
    cfg: Settings, tmp_path: Path, ua_factory: Callable[..., Any], bridges: list,
    gateway: str | None,
    on_incoming: Callable[[Baresip], Any] | None = None, **settings: Any,
) -> list[dict[str, Any]]:  # fmt: skip
    """5173 calls 6000, dials 0141587070; returns the call's service log."""
    callee = await ua_factory("callee", "0141587070", auto_answer=False, tone_hz=TONE)
    caller = await ua_factory("caller", "5173")
    async with Platform(cfg, gateway or f"127.0.0.1:{callee.sip_port}") as platform:
        await operator(**settings)
        bridge = bridges[-1]
        await caller.dial(f"sip:6000@{platform.sip_uri_base}")
        await caller.wait_event("CALL_ESTABLISHED", 10)
        await intro_then_dial(caller, bridge, "0141587070")
        if on_incoming is not None:
            await callee.wait_event("CALL_INCOMING", 15)
            await on_incoming(callee)
        await until(
            lambda: (dlg := dialog(bridge)) is not None and dlg.destination_tries >= 1, 20,
            "the failure prompt",
        )  # fmt: skip
        await prompt_heard(bridge, d.State.DESTINATION)
        await caller.hangup()
        await until(lambda: not bridge.calls, what="call finished")
        lines = await stored_log()
    return lines


def failure_timing(lines: list[dict[str, Any]], prompt: str) -> float:
    connect = line_with(lines, lambda x: any(a["do"] == "connect" for a in x["actions"]))
    told = line_with(lines, lambda x: (prompt, d.P_ANOTHER_CALL) in plays(x))
    return seconds_between(connect["at"], told["at"])


async def test_busy_destination_has_its_own_prompt_at_once(settings, tmp_path, ua_factory, bridges):
    async def reject(callee: Baresip) -> None:
        await callee.command("hangup")  # baresip refuses an incoming call with 486

    lines = await failing_call(settings, tmp_path, ua_factory, bridges, None, reject)
    assert failure_timing(lines, d.P_BUSY) < 3.0
    failed = line_with(lines, lambda x: x["event"]["type"] == "far_end_failed")
    assert failed["event"]["status"] == 486


async def test_no_answer_has_its_own_prompt_at_the_ring_timeout(
    settings: Settings, tmp_path: Path, ua_factory: Callable[..., Any], bridges: list
) -> None:
    async def let_it_ring(callee: Baresip) -> None:
        return None

    lines = await failing_call(
        settings, tmp_path, ua_factory, bridges, None, let_it_ring, ivr_no_answer_timeout=6
    )
    assert failure_timing(lines, d.P_NO_ANSWER) == pytest.approx(6.0, abs=1.0)


async def test_unreachable_gateway_has_its_own_prompt_at_once(
    settings: Settings, tmp_path: Path, ua_factory: Callable[..., Any], bridges: list
) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]  # nothing listens: ICMP port unreachable
    lines = await failing_call(settings, tmp_path, ua_factory, bridges, f"127.0.0.1:{closed}")
    assert failure_timing(lines, d.P_UNREACHABLE) < 2.0  # not Timer B (32 s)


# ------------------------------------------------------------------ another call


async def test_redial_after_the_destination_hangs_up_two_exact_cdrs(
    settings: Settings, tmp_path: Path, ua_factory: Callable[..., Any], bridges: list
) -> None:
    callee = await ua_factory("callee", "0141587070", auto_answer=True, tone_hz=TONE)
    caller = await ua_factory("caller", "5173")
    async with Platform(settings, f"127.0.0.1:{callee.sip_port}") as platform:
        bridge = bridges[-1]
        await caller.dial(f"sip:6000@{platform.sip_uri_base}")
        await caller.wait_event("CALL_ESTABLISHED", 10)
        await intro_then_dial(caller, bridge, "0141587070")
        await callee.wait_event("CALL_ESTABLISHED", 15)
        await asyncio.sleep(3.0)  # talk
        await callee.hangup()  # the destination hangs up first
        await callee.wait_event("CALL_CLOSED", 10)
        await prompt_heard(bridge, d.State.DESTINATION)  # credit, then "another call"
        await caller.send_digits("*#", gap=0.15)  # the last number again
        await callee.wait_event("CALL_ESTABLISHED", 15)
        await asyncio.sleep(2.0)
        await caller.hangup()
        await callee.wait_event("CALL_CLOSED", 10)
        await until(lambda: not bridge.calls, what="call finished")
        await asyncio.sleep(0.6)
        balance, reserved, cdrs, calls = await account_state("1001")

    assert len(cdrs) == 2
    assert len({c.session_id for c in cdrs}) == 2  # two credit-control sessions
    assert [c.dialed for c in cdrs] == ["0141587070", "0141587070"]
    for cdr, talk in zip(cdrs, (3, 2), strict=True):
        assert abs(cdr.duration - talk) <= 1
        assert cdr.cost == cdr.duration * RATE_DEFAULT
    assert [c.amount for c in calls] == [-c.cost for c in cdrs]
    assert balance == 250_000 - sum(c.cost for c in cdrs)
    assert reserved == 0


# ------------------------------------------------------------------ lockout


async def test_lockout_survives_a_restart(settings, tmp_path, ua_factory, bridges):
    from ivr_bridge import lockout_store

    callee = await ua_factory("callee", "0141587070", auto_answer=True, tone_hz=TONE)
    caller = await ua_factory("caller", "0699000002")  # not a registered caller ID
    gateway = f"127.0.0.1:{callee.sip_port}"
    async with Platform(settings, gateway) as platform:
        await operator(ivr_lockout_failures=2)
        bridge = bridges[-1]
        await caller.dial(f"sip:6000@{platform.sip_uri_base}")
        await caller.wait_event("CALL_ESTABLISHED", 10)
        for wrong in ("0000#", "9999#"):
            await prompt_heard(bridge, d.State.PIN)
            await caller.send_digits(wrong, gap=0.15)
            await until(lambda: (dlg := dialog(bridge)) is None or dlg.pin_tries >= 1)
        await caller.wait_event("CALL_CLOSED", 30)  # "locked out, goodbye"

    # a new process: nothing in memory, the lock is in the database
    async with Platform(settings, gateway) as platform:
        bridge = bridges[-1]
        await caller.dial(f"sip:6000@{platform.sip_uri_base}")
        await caller.wait_event("CALL_ESTABLISHED", 10)
        closed = await caller.wait_event("CALL_CLOSED", 20)
        assert closed["type"] == "CALL_CLOSED"
        samples, rate = last_recording(caller)
        heard = sound_segments(samples, rate)
        assert len(heard) == 1  # no PIN prompt at all
        assert heard[0].length == pytest.approx(
            prompt_seconds("FR", "locked_out", "goodbye"), abs=0.35
        )
        # the operator unlocks (Users page / API): PIN entry is offered again
        assert await lockout_store.unlock("0699000002")
        await caller.dial(f"sip:6000@{platform.sip_uri_base}")
        await caller.wait_event("CALL_ESTABLISHED", 10)
        await prompt_heard(bridge, d.State.PIN)
        await caller.hangup()
        await until(lambda: not bridge.calls, what="call finished")
