"""SIP INVITE flood against the real product (issue 13, item 8): Diameter latency and memory.

Spawns `ocs serve --only ocs --only ivr` (SQLite, demo data), keeps a light Gy load running
(1 connection, 4 sessions in flight) and measures, side by side in one run:

* idle: CCR latency with no SIP traffic;
* flood: the same load while INVITEs to the access number arrive at `--rate` per second for
  `--flood-seconds` (fresh Call-IDs, with SDP), OPTIONS probed every 100 ms; the flooder is
  its own process, so its work does not delay the Gy load generator's event loop;
* after: RSS of the server once the flood has drained.

The scenario runs with the bridge's admission limits (`OCS_SIP_MAX_CPS`,
`OCS_SIP_MAX_DIALOGS`, defaults 10/s and 100); with `--reject-all`, also with one dialog
allowed (the cost of refusing alone, without the calls the defaults admit); with
`--unlimited`, also with limits so high they never apply (the behaviour before the limits:
every INVITE becomes a call).

    python bench/sip_flood.py --out bench/results/sip_flood.json
    python bench/sip_flood.py --unlimited --unlimited-flood-seconds 3 --out ...
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.gy_load import free_port, percentile, run_load, wait_port

ROOT = Path(__file__).resolve().parent.parent
SDP = (
    "v=0\r\no=x 1 1 IN IP4 127.0.0.1\r\ns=x\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    "m=audio {port} RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n"
)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def udp_receive_errors() -> int:
    """System-wide UDP datagrams dropped for a full receive buffer (other traffic included)."""
    rows = [line.split() for line in Path("/proc/net/snmp").read_text().splitlines()
            if line.startswith("Udp:")]
    return int(rows[1][rows[0].index("RcvbufErrors")])


def invite(port: int, n: int, rtp_port: int) -> bytes:
    body = SDP.format(port=rtp_port).encode()
    tag = secrets.token_hex(6)
    head = (
        f"INVITE sip:6000@127.0.0.1 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK{tag}\r\n"
        f"From: <sip:07{n:08}@127.0.0.1>;tag={tag}\r\nTo: <sip:6000@127.0.0.1>\r\n"
        f"Call-ID: flood-{tag}\r\nCSeq: 1 INVITE\r\nContact: <sip:f@127.0.0.1:{port}>\r\n"
        f"Content-Type: application/sdp\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def options(port: int, n: int) -> bytes:
    return (
        f"OPTIONS sip:6000@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};"
        f"branch=z9hG4bKo{n}\r\nFrom: <sip:probe@127.0.0.1>;tag=p{n}\r\n"
        f"To: <sip:6000@127.0.0.1>\r\nCall-ID: probe-{n}-{secrets.token_hex(3)}\r\n"
        f"CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    ).encode()


class Flooder(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.statuses: dict[str, int] = {}
        self.retry_after = 0
        self.probe_sent: dict[str, float] = {}
        self.probe_rtt: list[float] = []

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        text = data.decode(errors="replace")
        status = text[8:11]
        self.statuses[status] = self.statuses.get(status, 0) + 1
        if "\r\nRetry-After:" in text:
            self.retry_after += 1
        if "Call-ID: probe-" in text:
            call_id = text.split("Call-ID: ", 1)[1].split("\r\n", 1)[0]
            sent = self.probe_sent.pop(call_id, None)
            if sent is not None:
                self.probe_rtt.append(time.perf_counter() - sent)


async def flood(sip_port: int, rate: int, seconds: float) -> dict[str, object]:
    loop = asyncio.get_running_loop()
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # RTP of admitted calls lands here
    sink.bind(("127.0.0.1", 0))
    transport, proto = await loop.create_datagram_endpoint(Flooder, local_addr=("127.0.0.1", 0))
    port = transport.get_extra_info("sockname")[1]
    target = ("127.0.0.1", sip_port)
    sent = probes = 0
    start = loop.time()
    tick = 0.01
    while (now := loop.time()) - start < seconds:
        due = int((now - start) * rate)
        while sent < due:
            transport.sendto(invite(port, sent, sink.getsockname()[1]), target)
            sent += 1
        if (now - start) >= probes * 0.1:
            call_id_msg = options(port, probes)
            call_id = call_id_msg.decode().split("Call-ID: ", 1)[1].split("\r\n", 1)[0]
            proto.probe_sent[call_id] = time.perf_counter()
            transport.sendto(call_id_msg, target)
            probes += 1
        await asyncio.sleep(tick)
    await asyncio.sleep(2.0)
    transport.close()
    sink.close()
    rtt = sorted(proto.probe_rtt)
    return {
        "invites_sent": sent,
        "responses": proto.statuses,
        "with_retry_after": proto.retry_after,
        "options_probes": probes,
        "options_answered": len(rtt),
        "options_p50_ms": round(percentile(rtt, 50) * 1000, 2),
        "options_max_ms": round((rtt[-1] if rtt else 0) * 1000, 2),
    }


def spawn(limits: dict[str, str]) -> tuple[subprocess.Popen[bytes], int, int]:
    diameter, sip = free_port(), free_port()
    env = {**os.environ, "OCS_DATA_DIR": tempfile.mkdtemp(prefix="ocs-sipflood-"),
           "OCS_DIAMETER_PORT": str(diameter), "OCS_DIAMETER_REALM": "bench",
           "OCS_DIAMETER_ORIGIN_HOST": "ocs.bench", "OCS_SIP_PORT": str(sip),
           "OCS_MQTT_URL": "", **limits}  # fmt: skip
    ocs = [sys.executable, "-m", "ocs.cli"]
    for step in (["migrate"], ["demo"], ["account", "credit", "1001", "1000000000"]):
        subprocess.run(ocs + step, cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
    proc = subprocess.Popen([*ocs, "serve", "--only", "ocs", "--only", "ivr"], cwd=ROOT,
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(diameter)
    time.sleep(1.0)
    return proc, diameter, sip


async def scenario(diameter: int, sip: int, pid: int, args: argparse.Namespace,
                   flood_seconds: float) -> dict[str, object]:
    load = {"connections": 1, "concurrency": 4, "warmup": 0.5, "mscc": True, "realm": "bench"}
    out: dict[str, object] = {"rss_start_mb": rss_mb(pid)}
    out["idle"] = await run_load("127.0.0.1", diameter, duration=args.idle_seconds, **load)
    drops = udp_receive_errors()
    flooder = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--flood-only", str(sip), "--rate", str(args.rate),
        "--flood-seconds", str(flood_seconds), stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    await asyncio.sleep(0.5)
    out["during_flood"] = await run_load(
        "127.0.0.1", diameter, duration=max(1.0, flood_seconds - 1.0), **load
    )
    out["rss_peak_mb"] = rss_mb(pid)
    stdout, _ = await flooder.communicate()
    out["flood"] = json.loads(stdout)
    out["flood"]["udp_rcvbuf_drops_system_wide"] = udp_receive_errors() - drops  # type: ignore[index]
    deadline = time.monotonic() + args.drain_seconds
    while time.monotonic() < deadline:
        await asyncio.sleep(1.0)
    out["rss_after_drain_mb"] = rss_mb(pid)
    out["after_drain"] = await run_load("127.0.0.1", diameter, duration=args.idle_seconds, **load)
    idle_p99 = out["idle"]["p99_ms"]  # type: ignore[index]
    flood_p99 = out["during_flood"]["p99_ms"]  # type: ignore[index]
    out["p99_ratio_flood_vs_idle"] = round(flood_p99 / idle_p99, 2) if idle_p99 else None
    return out


def run(limits: dict[str, str], args: argparse.Namespace, flood_seconds: float) -> dict:
    proc, diameter, sip = spawn(limits)
    try:
        result = asyncio.run(scenario(diameter, sip, proc.pid, args, flood_seconds))
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
    return {"limits": limits or "defaults (OCS_SIP_MAX_CPS=10, OCS_SIP_MAX_DIALOGS=100)",
            "flood_rate": args.rate, "flood_seconds": flood_seconds, **result}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate", type=int, default=500, help="INVITEs per second")
    ap.add_argument("--flood-seconds", type=float, default=10.0)
    ap.add_argument("--idle-seconds", type=float, default=5.0)
    ap.add_argument("--drain-seconds", type=float, default=45.0,
                    help="long enough for admitted flood calls to end (no ACK: 32 s)")
    ap.add_argument("--reject-all", action="store_true",
                    help="also run with a single dialog allowed (refusal cost alone)")
    ap.add_argument("--unlimited", action="store_true",
                    help="also run with limits that never apply (before the fix)")
    ap.add_argument("--unlimited-flood-seconds", type=float, default=3.0,
                    help="shorter: every INVITE becomes a call, on a shared machine")
    ap.add_argument("--out", type=Path)
    ap.add_argument("--flood-only", type=int, metavar="SIP_PORT", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.flood_only:  # the flooder process
        print(json.dumps(asyncio.run(flood(args.flood_only, args.rate, args.flood_seconds))))
        return 0
    results = {
        "bench": "sip_flood",
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
        "limited": run({}, args, args.flood_seconds),
    }
    if args.reject_all:
        results["reject_all"] = run({"OCS_SIP_MAX_DIALOGS": "1"}, args, args.flood_seconds)
    if args.unlimited:
        results["unlimited"] = run(
            {"OCS_SIP_MAX_CPS": "1000000", "OCS_SIP_MAX_DIALOGS": "1000000"}, args,
            args.unlimited_flood_seconds,
        )  # fmt: skip
    text = json.dumps(results, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
