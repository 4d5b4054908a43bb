"""One RTP leg on an asyncio UDP socket: paced prompt playback, DTMF in, relay to a peer leg.

Timing: frames are sent at absolute deadlines (start + n × 20 ms) on the event loop's
monotonic clock, so scheduling delays never accumulate into drift; each actual send time
is kept (bounded) so the jitter of the stream can be measured (`PlaybackStats`).
"""

from __future__ import annotations

import asyncio
import logging
import random
import statistics
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import cast

from ivr_bridge.media import rtp

log = logging.getLogger(__name__)

FRAME_SAMPLES = 160  # 20 ms at 8 kHz
FRAME_SECONDS = 0.020
SILENCE_FRAME = bytes([rtp.ULAW_SILENCE]) * FRAME_SAMPLES
# Timing samples kept per leg: 10 minutes of played frames. Bounded because every live call
# holds its legs' samples (a flood of calls must not cost memory without limit).
MAX_STATS = 30_000


@dataclass(slots=True)
class PlaybackStats:
    """Send-time deviation from the ideal 20 ms grid, per played prompt sequence."""

    frames: int = 0
    lateness: list[float] = field(default_factory=list)  # seconds after the ideal time
    intervals: list[float] = field(default_factory=list)  # between consecutive sends

    def summary(self) -> dict[str, float]:
        if not self.intervals:
            return {"frames": float(self.frames)}
        dev = [abs(i - FRAME_SECONDS) for i in self.intervals]
        ordered = sorted(dev)
        return {
            "frames": float(self.frames),
            "interval_mean_ms": statistics.fmean(self.intervals) * 1000,
            "interval_stdev_ms": statistics.pstdev(self.intervals) * 1000,
            "jitter_mean_ms": statistics.fmean(dev) * 1000,
            "jitter_p99_ms": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000,
            "jitter_max_ms": ordered[-1] * 1000,
            "lateness_max_ms": max(self.lateness) * 1000,
        }


class RtpLeg(asyncio.DatagramProtocol):
    """Our end of one audio stream. Payload in/out is G.711 of the negotiated codec."""

    def __init__(self, on_digit: Callable[[str], None] | None = None) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.remote: tuple[str, int] | None = None
        self.codec = rtp.PCMU_PT
        self.dtmf_pt: int | None = None
        self.on_digit = on_digit
        self.peer: RtpLeg | None = None  # relay target when bridged
        # Another leg relays into this one (bridged, or early media): the idle clock must
        # not add its own silence frames to that stream.
        self.relayed_into = False
        self.ssrc = random.getrandbits(32)
        self.sequence = random.getrandbits(16)
        self.timestamp = random.getrandbits(32)
        self._dtmf = rtp.DtmfReceiver()
        self._clock: asyncio.Task[None] | None = None
        self._play_buf = b""
        self._play_pos = 0
        self._on_done: Callable[[], None] | None = None
        self._loop_play = False
        self._sending = True
        self._dtmf_timers: list[asyncio.TimerHandle] = []
        self.stats = PlaybackStats()
        self.received_packets = 0
        self.relayed_packets = 0
        self._marker = True

    # ---------------------------------------------------------------- socket

    @classmethod
    async def open(
        cls, host: str, on_digit: Callable[[str], None] | None = None, port: int = 0
    ) -> RtpLeg:
        loop = asyncio.get_running_loop()
        _, protocol = await loop.create_datagram_endpoint(
            lambda: cls(on_digit), local_addr=(host, port)
        )
        return protocol

    @property
    def local_port(self) -> int:
        assert self.transport is not None
        return int(self.transport.get_extra_info("sockname")[1])

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def configure(self, remote: tuple[str, int], codec: int, dtmf_pt: int | None) -> None:
        self.remote = remote
        self.codec = codec
        self.dtmf_pt = dtmf_pt

    def close(self) -> None:
        self.stop_sending()
        if self.transport is not None:
            self.transport.close()
            self.transport = None

    def stop_sending(self) -> None:
        """Send nothing more (the call is hung up: no RTP after BYE). The socket stays open
        until `close`, so late packets from the peer are absorbed rather than ICMP-refused."""
        self._sending = False
        self.stop_playing()
        if self._clock is not None:
            self._clock.cancel()
            self._clock = None
        for timer in self._dtmf_timers:
            timer.cancel()
        self._dtmf_timers.clear()
        self.peer = None

    # ---------------------------------------------------------------- receive

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            packet = rtp.RtpPacket.parse(data)
        except rtp.RtpError:
            return
        self.received_packets += 1
        if self.dtmf_pt is not None and packet.payload_type == self.dtmf_pt:
            try:
                digit = self._dtmf.feed(packet)
            except rtp.RtpError:
                return
            if digit and self.on_digit is not None:
                self.on_digit(digit)
            return
        if packet.payload_type in (rtp.PCMU_PT, rtp.PCMA_PT) and self.peer is not None:
            self.peer.relay(packet.payload, packet.payload_type)

    # ---------------------------------------------------------------- send

    def _send(self, payload: bytes, payload_type: int, samples: int, marker: bool = False) -> None:
        if self.transport is None or self.remote is None or not self._sending:
            return
        packet = rtp.RtpPacket(
            payload_type, self.sequence, self.timestamp, self.ssrc, payload, marker
        )
        self.transport.sendto(packet.to_bytes(), self.remote)
        self.sequence = (self.sequence + 1) & 0xFFFF
        self.timestamp = (self.timestamp + samples) & 0xFFFFFFFF

    def send_ulaw(self, payload: bytes) -> None:
        """Send one frame of µ-law audio (converted to the leg's codec)."""
        data = rtp.transcode(payload, rtp.PCMU_PT, self.codec)
        self._send(data, self.codec, len(payload), self._marker)
        self._marker = False

    def relay(self, payload: bytes, payload_type: int) -> None:
        """Audio from the peer leg; dropped while a prompt plays on this leg."""
        if self.playing:
            return
        self.relayed_packets += 1
        self._send(rtp.transcode(payload, payload_type, self.codec), self.codec, len(payload))

    # ---------------------------------------------------------------- playback

    @property
    def playing(self) -> bool:
        return self._play_pos < len(self._play_buf)

    def start_clock(self) -> None:
        """Send a continuous 20 ms stream: prompt audio when playing, silence when idle and
        not relayed into (a real switch never leaves the line without RTP)."""
        if self._clock is None and self._sending:
            self._clock = asyncio.get_running_loop().create_task(self._run_clock())

    def play(
        self, audio: bytes, on_done: Callable[[], None] | None = None, *, loop: bool = False
    ) -> None:
        """Play µ-law audio (any length) on the 20 ms clock; `on_done` once it has been sent.
        `loop` repeats it until `stop_playing` (ringback); `on_done` is then never called."""
        self.start_clock()
        pad = (-len(audio)) % FRAME_SAMPLES
        self._play_buf = audio + bytes([rtp.ULAW_SILENCE]) * pad
        self._play_pos = 0
        self._on_done = on_done
        self._loop_play = loop and bool(audio)
        self._marker = True

    def stop_playing(self) -> None:
        self._play_buf = b""
        self._play_pos = 0
        self._on_done = None
        self._loop_play = False

    async def _run_clock(self) -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        n = 0
        last: float | None = None
        while self.transport is not None:
            deadline = start + n * FRAME_SECONDS
            delay = deadline - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            now = loop.time()
            if now - deadline > 0.2:  # the loop stalled: resynchronise, do not burst
                start, n = now, 0
                deadline = now
            n += 1
            if self.playing:
                frame = self._play_buf[self._play_pos : self._play_pos + FRAME_SAMPLES]
                self._play_pos += FRAME_SAMPLES
                self.send_ulaw(frame)
                self._record(now - deadline, None if last is None else now - last)
                last = now
                if not self.playing and self._loop_play:
                    self._play_pos = 0
                elif not self.playing:
                    done, self._on_done = self._on_done, None
                    self._play_buf, self._play_pos = b"", 0
                    if done is not None:
                        loop.call_soon(done)
                continue
            last = None
            if not self.relayed_into:
                self.send_ulaw(SILENCE_FRAME)

    def _record(self, lateness: float, interval: float | None) -> None:
        stats = self.stats
        stats.frames += 1
        if len(stats.lateness) < MAX_STATS:
            stats.lateness.append(lateness)
            if interval is not None:
                stats.intervals.append(interval)

    def relay_dtmf(self, digit: str, ms: int = 100) -> bool:
        """Send one RFC 4733 event paced like a phone: an update every 20 ms, then the
        three end packets. Returns False when the far end did not offer telephone-event."""
        if self.dtmf_pt is None or self.transport is None or digit.upper() not in rtp.DTMF_EVENTS:
            return False
        packets = rtp.dtmf_packets(
            digit, ssrc=self.ssrc, sequence=0, timestamp=self.timestamp,
            payload_type=self.dtmf_pt, ms=ms,
        )  # fmt: skip
        # The event owns its start timestamp; later audio and events start after it (a
        # receiver tells events apart by timestamp).
        self.timestamp = (self.timestamp + (len(packets) - 3) * FRAME_SAMPLES) & 0xFFFFFFFF
        loop = asyncio.get_running_loop()
        steps = len(packets) - 3
        for i, packet in enumerate(packets):
            delay = min(i, steps) * FRAME_SECONDS
            self._dtmf_timers.append(loop.call_later(delay, self._send_event, packet))
        del self._dtmf_timers[:-64]
        return True

    def _send_event(self, packet: rtp.RtpPacket) -> None:
        if self.transport is None or self.remote is None or not self._sending:
            return
        sequenced = rtp.RtpPacket(
            packet.payload_type, self.sequence, packet.timestamp, self.ssrc, packet.payload,
            packet.marker,
        )  # fmt: skip
        self.transport.sendto(sequenced.to_bytes(), self.remote)
        self.sequence = (self.sequence + 1) & 0xFFFF

    def send_dtmf(self, digits: Iterable[str]) -> None:
        """Emit RFC 4733 packets (immediate, for tests and tools)."""
        if self.dtmf_pt is None:
            return
        for digit in digits:
            for packet in rtp.dtmf_packets(
                digit, ssrc=self.ssrc, sequence=self.sequence, timestamp=self.timestamp,
                payload_type=self.dtmf_pt,
            ):  # fmt: skip
                if self.transport is not None and self.remote is not None:
                    self.transport.sendto(packet.to_bytes(), self.remote)
                self.sequence = (self.sequence + 1) & 0xFFFF
            self.timestamp = (self.timestamp + 800) & 0xFFFFFFFF
