"""Prompt-stream timing seen by Wireshark: one real call, measured by `tshark -z rtp,streams`.

    python bench/ivr_tshark_rtp.py [--out bench/results/ivr_tshark_rtp.json]

A baresip caller dials the access number of an `IvrBridge` (fake directory and charging:
no database needed), enters a PIN and a destination by RFC 4733, a second baresip answers;
the grant is final (8 s) so the call ends with the cut-off announcement. tshark captures
loopback UDP; its RTP stream analysis (RFC 3550 jitter, inter-packet delta, loss) of the
stream the bridge sends to the caller is printed and written as JSON. Needs root (or
capture rights), tshark and baresip.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import tempfile
from decimal import Decimal
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ivr_bridge import dialog as d
from ivr_bridge.service import BridgeSettings, IvrBridge
from tests.e2e.ivr_baresip import Baresip

ACCOUNT = d.AccountInfo(1, "1001", "FR", 203800, Decimal("20.38"), 16)


class Directory:
    async def account_by_pin(self, pin: str) -> d.AccountInfo | None:
        return ACCOUNT if pin == "1234" else None

    async def account_by_caller(self, number: str) -> d.AccountInfo | None:
        return None

    async def did_target(self, account_id: int, did: str) -> str | None:
        return None

    async def check_destination(self, account: Any, destination: str) -> d.DestinationChecked:
        return d.DestinationChecked(d.DestinationStatus.OK, 600)


class Session:
    session_id = "bench"

    async def start(self, connect_delay: int) -> d.ChargingAnswered:
        return d.ChargingAnswered(True, 8, final=True)

    async def update(self, used: int) -> d.ChargingAnswered:
        return d.ChargingAnswered(True, 8, final=True)

    async def stop(self, used: int) -> d.ChargingAnswered:
        return d.ChargingAnswered(True)


class Charging:
    def open_session(self, *args: Any) -> Session:
        return Session()


async def run(workdir: Path) -> dict[str, Any]:
    pcap = workdir / "call.pcapng"
    tshark = await asyncio.create_subprocess_exec(
        "tshark", "-i", "lo", "-f", "udp", "-w", str(pcap),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    await asyncio.sleep(2)
    callee = Baresip(workdir / "callee", "0141587070", auto_answer=True, tone_hz=1000)
    caller = Baresip(workdir / "caller", "5173")
    await callee.start()
    await caller.start()

    async def settings() -> BridgeSettings:
        return BridgeSettings(d.DialogConfig(), f"127.0.0.1:{callee.sip_port}")

    bridge = IvrBridge("127.0.0.1", 0, directory=Directory(), charging=Charging(),
                       settings=settings)  # fmt: skip
    await bridge.start()
    try:
        await caller.dial(f"sip:6000@127.0.0.1:{bridge.sip_port}")
        await caller.wait_event("CALL_ESTABLISHED", 10)
        leg_port = next(iter(bridge.calls.values())).caller_leg.local_port
        await asyncio.sleep(5.5)  # greeting
        await caller.send_digits("1234#")
        await asyncio.sleep(11.0)  # credit announcement
        await caller.send_digits("0141587070#")
        await caller.wait_event("CALL_CLOSED", 40)
    finally:
        await caller.stop()
        await callee.stop()
        await bridge.stop()
        await asyncio.sleep(1)
        tshark.terminate()
        await tshark.wait()
    proc = await asyncio.create_subprocess_exec(
        "tshark", "-r", str(pcap), "-d", f"udp.port=={leg_port},rtp", "-q", "-z",
        "rtp,streams", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    out, _ = await proc.communicate()
    text = out.decode()
    for line in text.splitlines():
        fields = line.split()
        if len(fields) > 8 and fields[3] == str(leg_port):
            numbers = re.findall(r"[-\d.]+", line.split("g711U", 1)[1])
            pkts, lost = int(numbers[0]), int(numbers[1])
            keys = ["min_delta_ms", "mean_delta_ms", "max_delta_ms", "min_jitter_ms",
                    "mean_jitter_ms", "max_jitter_ms"]  # fmt: skip
            values = [float(n) for n in numbers[-6:]]
            return {"packets": pkts, "lost": lost, **dict(zip(keys, values, strict=True)),
                    "tshark": line.strip()}  # fmt: skip
    raise SystemExit(f"bridge stream (port {leg_port}) not found in:\n{text}")


RESULT = Path(__file__).parent / "results" / (Path(__file__).stem + ".json")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=RESULT)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        result = asyncio.run(run(Path(tmp)))
    print(json.dumps(result, indent=1))
    args.out.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
