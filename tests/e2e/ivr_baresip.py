"""Drive Debian's baresip (a SIP user agent we did not write) from tests.

Each `Baresip` runs ``baresip -f <confdir>`` with:

* audio source ``ausine`` (a 440 Hz tone, so the far end hears something), audio player
  ``aubridge`` (a null device: no sound card needed), codecs PCMU/PCMA;
* ``sndfile``: every call's decoded audio (what this UA *hears*) is written to
  ``<rec>/dump-<peer>-dec.wav``;
* ``ctrl_tcp`` on a local port: JSON commands framed as netstrings
  (``{"command": "dial", "params": "sip:6000@127.0.0.1:5070", "token": "1"}``), responses
  and call events (``CALL_ESTABLISHED``, ``CALL_CLOSED``…) come back the same way;
* DTMF: ``sndcode <digit>`` sends RFC 4733 telephone-events on the RTP stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import math
import shutil
import socket
import struct
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BARESIP = shutil.which("baresip")
MODULE_PATH = "/usr/lib/baresip/modules"


# baresip is configured by file, before it starts, so its own ports are picked here (our
# servers bind port 0 and report theirs). A port taken meanwhile makes baresip fail to
# start, which `Baresip.start` reports; nothing waits on a port that might be reused.
def free_port(kind: int = socket.SOCK_DGRAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_port_both() -> int:
    """A port free for both UDP and TCP (baresip listens on both for SIP)."""
    for _ in range(50):
        port = free_port(socket.SOCK_DGRAM)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port")


class Baresip:
    def __init__(
        self, workdir: Path, user: str, *, auto_answer: bool = False, tone_hz: int = 440
    ) -> None:
        self.dir = workdir
        self.user = user
        self.sip_port = free_port_both()
        self.ctrl_port = free_port(socket.SOCK_STREAM)
        self.rec = workdir / "rec"
        self.auto_answer = auto_answer
        self.tone_hz = tone_hz
        self.proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._tokens = itertools.count(1)
        self._responses: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self.events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.event_log: list[dict[str, Any]] = []
        self._read_task: asyncio.Task[None] | None = None

    @property
    def uri(self) -> str:
        return f"sip:{self.user}@127.0.0.1:{self.sip_port}"

    def _write_config(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.rec.mkdir(exist_ok=True)
        config = f"""
poll_method		epoll
sip_listen		127.0.0.1:{self.sip_port}
audio_player		aubridge,nil-{self.sip_port}
audio_source		ausine,{self.tone_hz}
ausrc_srate		48000
auplay_srate		48000
ausrc_channels		2
auplay_channels		2
audio_alert		aubridge,nil-{self.sip_port}
module_path		{MODULE_PATH}
module			g711.so
module			ausine.so
module			aubridge.so
module			sndfile.so
module_app		account.so
module_app		menu.so
module_app		ctrl_tcp.so
ctrl_tcp_listen		127.0.0.1:{self.ctrl_port}
snd_path		{self.rec}
"""
        (self.dir / "config").write_text(config)
        answer = ";answermode=auto" if self.auto_answer else ""
        (self.dir / "accounts").write_text(
            f"<sip:{self.user}@127.0.0.1:{self.sip_port}>;regint=0{answer};audio_codecs=PCMU,PCMA\n"
        )

    async def start(self) -> None:
        assert BARESIP is not None
        self._write_config()
        self.log_file = open(self.dir / "baresip.log", "wb")  # noqa: SIM115
        self.proc = await asyncio.create_subprocess_exec(
            BARESIP, "-f", str(self.dir),
            stdin=asyncio.subprocess.PIPE, stdout=self.log_file, stderr=self.log_file,
        )  # fmt: skip
        for _ in range(100):
            try:
                self._reader, self._writer = await asyncio.open_connection(
                    "127.0.0.1", self.ctrl_port
                )
                break
            except OSError:
                await asyncio.sleep(0.05)
        else:
            raise RuntimeError(f"baresip ctrl_tcp did not come up: {self.dir}/baresip.log")
        self._read_task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self._reader is not None
        while True:
            try:
                size = await self._reader.readuntil(b":")
                data = await self._reader.readexactly(int(size[:-1]) + 1)
            except (asyncio.IncompleteReadError, ConnectionError, ValueError):
                return
            message = json.loads(data[:-1])
            if message.get("response"):
                fut = self._responses.pop(str(message.get("token")), None)
                if fut is not None and not fut.done():
                    fut.set_result(message)
            elif message.get("event"):
                self.event_log.append(message)
                self.events.put_nowait(message)

    async def command(self, command: str, params: str = "") -> dict[str, Any]:
        assert self._writer is not None
        token = str(next(self._tokens))
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._responses[token] = fut
        body = json.dumps({"command": command, "params": params, "token": token}).encode()
        self._writer.write(str(len(body)).encode() + b":" + body + b",")
        await self._writer.drain()
        return await asyncio.wait_for(fut, 5)

    async def wait_event(self, kind: str, timeout: float = 20) -> dict[str, Any]:
        async with asyncio.timeout(timeout):
            while True:
                event = await self.events.get()
                if event.get("type") == kind:
                    return event

    async def dial(self, uri: str) -> dict[str, Any]:
        return await self.command("dial", uri)

    async def send_digits(self, digits: str, gap: float = 0.3) -> None:
        for digit in digits:
            await self.command("sndcode", digit)
            await asyncio.sleep(gap)

    async def hangup(self) -> None:
        with contextlib.suppress(Exception):
            await self.command("hangup")

    async def stop(self) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.command("quit"), 2)
        try:
            await asyncio.wait_for(self.proc.wait(), 3)
        except TimeoutError:
            self.proc.terminate()
            await self.proc.wait()
        if self._read_task is not None:
            self._read_task.cancel()
        if self._writer is not None:
            self._writer.close()
        self.log_file.close()
        self.proc = None

    def recordings(self, kind: str = "dec") -> list[Path]:
        return sorted(self.rec.glob(f"dump-*-{kind}.wav"))


# --------------------------------------------------------------------------- audio analysis


@dataclass(frozen=True)
class Segment:
    start: float
    end: float

    @property
    def length(self) -> float:
        return self.end - self.start


def read_wav(path: Path) -> tuple[list[int], int]:
    with wave.open(str(path)) as w:
        assert w.getsampwidth() == 2, "expects 16-bit PCM"
        rate = w.getframerate()
        channels = w.getnchannels()
        raw = w.readframes(w.getnframes())
    samples = list(struct.unpack(f"<{len(raw) // 2}h", raw))[::channels]
    return samples, rate


def sound_segments(
    samples: list[int], rate: int, *, threshold: float = 300.0, min_gap: float = 0.4,
    frame: float = 0.02,
) -> list[Segment]:  # fmt: skip
    """Runs of 20 ms frames whose RMS exceeds `threshold`, merged across gaps < `min_gap`."""
    size = max(1, int(rate * frame))
    active: list[bool] = []
    for i in range(0, len(samples) - size + 1, size):
        chunk = samples[i : i + size]
        rms = math.sqrt(sum(s * s for s in chunk) / size)
        active.append(rms > threshold)
    segments: list[Segment] = []
    start: int | None = None
    for n, on in enumerate([*active, False]):
        if on and start is None:
            start = n
        elif not on and start is not None:
            seg = Segment(start * frame, n * frame)
            if segments and seg.start - segments[-1].end < min_gap:
                segments[-1] = Segment(segments[-1].start, seg.end)
            else:
                segments.append(seg)
            start = None
    return segments


def tone_frames(samples: list[int], rate: int, hz: float, frame: float = 0.02) -> list[bool]:
    """Per 20 ms frame: is a pure tone at `hz` dominant (Goertzel vs total energy)?"""
    size = int(rate * frame)
    coeff = 2 * math.cos(2 * math.pi * hz / rate)
    out: list[bool] = []
    for i in range(0, len(samples) - size + 1, size):
        chunk = samples[i : i + size]
        s1 = s2 = 0.0
        for x in chunk:
            s1, s2 = x + coeff * s1 - s2, s1
        power = s1 * s1 + s2 * s2 - coeff * s1 * s2
        energy = sum(x * x for x in chunk) * size / 2
        out.append(energy > 1e6 and power / energy > 0.6)
    return out
