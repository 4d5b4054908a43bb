"""SIP INVITE flood (issue 13, item 8): new dialogs are limited per second and in number,
the rest get a stateless 503 with Retry-After, OPTIONS still answer, memory stays bounded.
Admission rule unit-tested with a fake clock; the flood over real UDP on loopback."""

from __future__ import annotations

import asyncio
import secrets
import socket
from collections.abc import AsyncIterator

import pytest

from ivr_bridge import dialog as d
from ivr_bridge.service import BridgeSettings, IvrBridge, PromptLibrary
from ivr_bridge.sip.admission import Admission
from ivr_bridge.sip.ua import REJECTED_CACHE, _quoted_call_id
from tests.unit.ivr_fakes import FakeLockout, MemoryLogSink
from tests.unit.test_ivr_service import FakeCharging, FakeDirectory
from tests.unit.test_ivr_service_features import prompts

__all__ = ["prompts"]


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_token_bucket_rate_and_burst():
    clock = Clock()
    adm = Admission(clock, max_dialogs=1000, per_second=10)
    assert [adm.admit(0) for _ in range(10)] == [None] * 10  # a burst of one second's worth
    assert adm.admit(0) == 1
    clock.now += 0.25  # 2.5 tokens back
    assert [adm.admit(0) for _ in range(3)] == [None, None, 1]
    clock.now += 60  # refills, but never beyond the burst
    assert sum(adm.admit(0) is None for _ in range(20)) == 10
    assert (adm.admitted, adm.refused) == (22, 12)


def test_slow_rate_answers_a_longer_retry_after():
    clock = Clock()
    adm = Admission(clock, per_second=0.25, burst=1)
    assert adm.admit(0) is None
    assert adm.admit(0) == 4


def test_concurrency_limit():
    clock = Clock()
    adm = Admission(clock, max_dialogs=3, per_second=100, busy_retry_after=7)
    assert adm.admit(2) is None
    assert adm.admit(3) == 7


def test_limits_must_be_positive():
    with pytest.raises(ValueError):
        Admission(Clock(), max_dialogs=0)
    with pytest.raises(ValueError):
        Admission(Clock(), per_second=0)


def test_call_id_from_a_truncated_icmp_quote():
    sent = (
        b"INVITE sip:1@h SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKx\r\n"
        b"From: <sip:a@h>;tag=1\r\nTo: <sip:1@h>\r\nCall-ID: abc@h\r\nCSeq: 1 INVITE\r\nContent-Le"
    )
    assert _quoted_call_id(sent) == ("abc@h", "INVITE")
    assert _quoted_call_id(b"SIP/2.0 200 OK\r\ni: x\r\n") == ("x", "")
    assert _quoted_call_id(b"\x00\xff garbage")[0] == ""


# ------------------------------------------------------------------ flood over UDP

SDP = (
    "v=0\r\no=x 1 1 IN IP4 127.0.0.1\r\ns=x\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    "m=audio {port} RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n"
)


def invite(port: int, call_id: str, branch: str, rtp_port: int) -> bytes:
    body = SDP.format(port=rtp_port).encode()
    head = (
        f"INVITE sip:6000@127.0.0.1 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK{branch}\r\n"
        f"From: <sip:0699{secrets.randbelow(10**6):06}@127.0.0.1>;tag=f{branch}\r\n"
        f"To: <sip:6000@127.0.0.1>\r\nCall-ID: {call_id}\r\nCSeq: 1 INVITE\r\n"
        f"Contact: <sip:x@127.0.0.1:{port}>\r\nContent-Type: application/sdp\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def options(port: int, n: int) -> bytes:
    return (
        f"OPTIONS sip:6000@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};"
        f"branch=z9hG4bKopt{n}\r\nFrom: <sip:probe@127.0.0.1>;tag=p{n}\r\n"
        f"To: <sip:6000@127.0.0.1>\r\nCall-ID: opt-{n}\r\nCSeq: 1 OPTIONS\r\n"
        f"Content-Length: 0\r\n\r\n"
    ).encode()


@pytest.fixture
async def bridge(prompts: PromptLibrary) -> AsyncIterator[IvrBridge]:
    async def settings() -> BridgeSettings:
        return BridgeSettings(d.DialogConfig(one_step_access=False, first_digit_timeout=30), "")

    b = IvrBridge(
        "127.0.0.1", 0, directory=FakeDirectory(), charging=FakeCharging(), settings=settings,
        prompts=prompts, lockout=FakeLockout(), log_sink=MemoryLogSink(),
        max_dialogs=20, max_cps=10,
    )  # fmt: skip
    await b.start()
    yield b
    await b.stop()


async def test_invite_flood_gets_503_with_retry_after_and_calls_stay_bounded(bridge: IvrBridge):
    flood = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    flood.bind(("127.0.0.1", 0))
    flood.setblocking(False)
    port = flood.getsockname()[1]
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # where admitted calls send RTP
    sink.bind(("127.0.0.1", 0))
    rtp_port = sink.getsockname()[1]
    target = ("127.0.0.1", bridge.sip_port)
    replies: list[bytes] = []
    most_calls = 0

    async def read_all(seconds: float) -> None:
        loop = asyncio.get_running_loop()
        end = loop.time() + seconds
        while loop.time() < end:
            try:
                replies.append(flood.recv(65535))
            except BlockingIOError:
                await asyncio.sleep(0.002)

    try:
        sent: list[tuple[str, str]] = []
        for n in range(300):
            call_id, branch = f"flood-{n}-{secrets.token_hex(4)}", f"b{n}"
            sent.append((call_id, branch))
            flood.sendto(invite(port, call_id, branch, rtp_port), target)
            if n == 150:
                flood.sendto(options(port, n), target)
            if n % 25 == 0:
                await read_all(0.01)
                most_calls = max(most_calls, len(bridge.calls))
        # a retransmission of a refused INVITE gets the same 503 and still no call
        call_id, branch = sent[-1]
        flood.sendto(invite(port, call_id, branch, rtp_port), target)
        await read_all(1.0)
        most_calls = max(most_calls, len(bridge.calls))
    finally:
        flood.close()
        sink.close()

    texts = [r.decode(errors="replace") for r in replies]
    refused = [t for t in texts if t.startswith("SIP/2.0 503")]
    assert len(refused) >= 270
    assert all("\r\nRetry-After: " in t for t in refused)
    assert sum(f"Call-ID: {sent[-1][0]}\r\n" in t for t in refused) == 2
    assert any(t.startswith("SIP/2.0 200") and "Call-ID: opt-150" in t for t in texts)
    # the rate limit admitted a burst plus what the rate allows in the flood's duration
    assert bridge.ua.rejected_invites == len(refused) - 1  # the retransmission: from cache
    assert bridge.admission.admitted <= 20
    assert most_calls <= 20
    assert len(bridge.ua.inbound) <= bridge.admission.admitted
    assert len(bridge.ua._rejected) <= REJECTED_CACHE


async def test_concurrent_dialogs_are_capped(prompts: PromptLibrary):
    async def settings() -> BridgeSettings:
        return BridgeSettings(d.DialogConfig(one_step_access=False, first_digit_timeout=30), "")

    bridge = IvrBridge(
        "127.0.0.1", 0, directory=FakeDirectory(), charging=FakeCharging(), settings=settings,
        prompts=prompts, lockout=FakeLockout(), log_sink=MemoryLogSink(),
        max_dialogs=4, max_cps=1000,
    )  # fmt: skip
    await bridge.start()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(2)
    port = sock.getsockname()[1]
    try:
        for n in range(4):
            sock.sendto(invite(port, f"c-{n}", f"c{n}", 9), ("127.0.0.1", bridge.sip_port))
            async with asyncio.timeout(5):
                while len(bridge.calls) <= n:
                    await asyncio.sleep(0.01)
        sock.sendto(invite(port, "c-extra", "cx", 9), ("127.0.0.1", bridge.sip_port))
        async with asyncio.timeout(5):
            while bridge.ua.rejected_invites == 0:
                await asyncio.sleep(0.01)
        assert len(bridge.calls) == 4
    finally:
        sock.close()
        await bridge.stop()
