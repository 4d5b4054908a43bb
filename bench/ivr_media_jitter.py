"""Timing of the IVR prompt stream: how regular are the 20 ms RTP frames?

    python bench/ivr_media_jitter.py [--seconds 20] [--streams 1 50 200] [--out FILE]

For each load level, N `RtpLeg`s (the bridge's own media code) play the French credit
announcement in a loop to N receiving sockets on loopback, all in one event loop, as the
bridge does with N simultaneous callers. Reported per level:

* send side: interval between consecutive frames of a stream (ideal 20 ms): mean, stdev,
  |deviation| mean / p99 / max, and the worst lateness against the absolute 20 ms grid;
* receive side: RFC 3550 interarrival jitter (the RTCP estimator, in ms), and the p99 / max
  of |inter-arrival - 20 ms|; packets lost.

Results are printed and written as JSON (default bench/results/ivr_media_jitter.json).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import platform
import statistics
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

from ivr_bridge.media.rtp import RtpPacket
from ivr_bridge.media.session import RtpLeg
from ivr_bridge.service import PromptLibrary
from ivr_bridge.speech import credit_announcement


class Receiver(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.arrivals: list[tuple[float, int, int]] = []  # (time, seq, rtp ts)
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        packet = RtpPacket.parse(data)
        self.arrivals.append((time.perf_counter(), packet.sequence, packet.timestamp))


def rfc3550_jitter(arrivals: list[tuple[float, int, int]]) -> float:
    """Final value of the RTCP interarrival jitter estimator, in ms."""
    jitter = 0.0
    for (t0, _, ts0), (t1, _, ts1) in itertools.pairwise(arrivals):
        d = (t1 - t0) - ((ts1 - ts0) & 0xFFFFFFFF) / 8000
        jitter += (abs(d) - jitter) / 16
    return jitter * 1000


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


async def run_level(streams: int, seconds: float, audio: bytes) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    receivers: list[Receiver] = []
    legs: list[RtpLeg] = []
    for _ in range(streams):
        _, receiver = await loop.create_datagram_endpoint(Receiver, local_addr=("127.0.0.1", 0))
        assert receiver.transport is not None
        port = receiver.transport.get_extra_info("sockname")[1]
        leg = await RtpLeg.open("127.0.0.1")
        leg.configure(("127.0.0.1", port), 0, None)
        receivers.append(receiver)
        legs.append(leg)

    def replay(leg: RtpLeg) -> None:
        leg.play(audio, lambda: replay(leg))

    for leg in legs:
        replay(leg)
    await asyncio.sleep(seconds)
    for leg in legs:
        leg.close()
    await asyncio.sleep(0.1)
    for receiver in receivers:
        if receiver.transport is not None:
            receiver.transport.close()

    intervals = [i for leg in legs for i in leg.stats.intervals]
    deviation = [abs(i - 0.020) * 1000 for i in intervals]
    lateness = [x * 1000 for leg in legs for x in leg.stats.lateness]
    arrivals_dev: list[float] = []
    jitters: list[float] = []
    lost = 0
    for receiver in receivers:
        arr = receiver.arrivals
        jitters.append(rfc3550_jitter(arr))
        arrivals_dev += [abs((b[0] - a[0]) - 0.020) * 1000 for a, b in itertools.pairwise(arr)]
        if arr:
            expected = ((arr[-1][1] - arr[0][1]) & 0xFFFF) + 1
            lost += expected - len(arr)
    frames = sum(leg.stats.frames for leg in legs)
    return {
        "streams": streams,
        "seconds": seconds,
        "frames_sent": frames,
        "send_interval_mean_ms": statistics.fmean(intervals) * 1000,
        "send_interval_stdev_ms": statistics.pstdev(intervals) * 1000,
        "send_dev_mean_ms": statistics.fmean(deviation),
        "send_dev_p99_ms": pct(deviation, 0.99),
        "send_dev_max_ms": max(deviation),
        "send_lateness_max_ms": max(lateness),
        "recv_rfc3550_jitter_mean_ms": statistics.fmean(jitters),
        "recv_rfc3550_jitter_max_ms": max(jitters),
        "recv_dev_p99_ms": pct(arrivals_dev, 0.99),
        "recv_dev_max_ms": max(arrivals_dev),
        "packets_lost": lost,
    }


async def main_async(args: argparse.Namespace) -> list[dict[str, Any]]:
    prompts = PromptLibrary()
    words = credit_announcement("FR", Decimal("20.38"), "Euros", 16)
    audio = prompts.sequence("FR", (*words, "enter_destination"))
    results = []
    for streams in args.streams:
        result = await run_level(streams, args.seconds, audio)
        results.append(result)
        print(json.dumps(result, indent=1))
    return results


RESULT = Path(__file__).parent / "results" / (Path(__file__).stem + ".json")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--streams", type=int, nargs="+", default=[1, 50, 200])
    parser.add_argument("--out", type=Path, default=RESULT)
    args = parser.parse_args()
    results = asyncio.run(main_async(args))
    args.out.write_text(
        json.dumps(
            {
                "python": platform.python_version(),
                "machine": platform.machine(),
                "results": results,
            },
            indent=1,
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
