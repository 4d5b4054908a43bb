"""RTP (RFC 3550) packets, RFC 4733 DTMF events and G.711 conversion. Pure.

`DtmfReceiver` turns telephone-event packets into digits exactly once per event, whatever
the redundancy (several packets per event, three end packets) or loss of the first packets.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

RTP_VERSION = 2
PCMU_PT = 0
PCMA_PT = 8
_HEADER = struct.Struct("!BBHII")
DTMF_EVENTS = "0123456789*#ABCD"


class RtpError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class RtpPacket:
    payload_type: int
    sequence: int
    timestamp: int
    ssrc: int
    payload: bytes
    marker: bool = False

    def to_bytes(self) -> bytes:
        first = RTP_VERSION << 6
        second = (0x80 if self.marker else 0) | (self.payload_type & 0x7F)
        return (
            _HEADER.pack(
                first,
                second,
                self.sequence & 0xFFFF,
                self.timestamp & 0xFFFFFFFF,
                self.ssrc & 0xFFFFFFFF,
            )
            + self.payload
        )

    @classmethod
    def parse(cls, data: bytes) -> RtpPacket:
        if len(data) < _HEADER.size:
            raise RtpError("short RTP packet")
        first, second, seq, ts, ssrc = _HEADER.unpack_from(data)
        if first >> 6 != RTP_VERSION:
            raise RtpError("not RTP version 2")
        offset = _HEADER.size + 4 * (first & 0x0F)
        if first & 0x10:  # header extension
            if len(data) < offset + 4:
                raise RtpError("truncated RTP extension")
            (length,) = struct.unpack_from("!H", data, offset + 2)
            offset += 4 + 4 * length
        end = len(data)
        if first & 0x20:  # padding
            if end <= offset:
                raise RtpError("bad RTP padding")
            end -= data[-1]
        if end < offset:
            raise RtpError("truncated RTP packet")
        return cls(second & 0x7F, seq, ts, ssrc, bytes(data[offset:end]), bool(second & 0x80))


@dataclass(frozen=True, slots=True)
class DtmfEvent:
    event: int
    end: bool
    volume: int
    duration: int

    @property
    def digit(self) -> str | None:
        return DTMF_EVENTS[self.event] if 0 <= self.event < len(DTMF_EVENTS) else None

    def to_bytes(self) -> bytes:
        return struct.pack(
            "!BBH", self.event, (0x80 if self.end else 0) | (self.volume & 0x3F), self.duration
        )

    @classmethod
    def parse(cls, payload: bytes) -> DtmfEvent:
        if len(payload) < 4:
            raise RtpError("short telephone-event payload")
        event, flags, duration = struct.unpack_from("!BBH", payload)
        return cls(event, bool(flags & 0x80), flags & 0x3F, duration)


class DtmfReceiver:
    """Reports each telephone-event once, at its first packet (RTP timestamp identifies it)."""

    def __init__(self) -> None:
        self._seen: list[tuple[int, int]] = []  # (ssrc, timestamp) of recent events

    def feed(self, packet: RtpPacket) -> str | None:
        event = DtmfEvent.parse(packet.payload)
        key = (packet.ssrc, packet.timestamp)
        if key in self._seen:
            return None
        self._seen.append(key)
        del self._seen[:-16]
        return event.digit


def dtmf_packets(
    digit: str, *, ssrc: int, sequence: int, timestamp: int, payload_type: int, ms: int = 100
) -> list[RtpPacket]:
    """RFC 4733 packets for one digit: updates every 20 ms, then three end packets."""
    event = DTMF_EVENTS.index(digit.upper())
    out: list[RtpPacket] = []
    steps = max(1, ms // 20)
    for i in range(1, steps + 1):
        payload = DtmfEvent(event, False, 10, i * 160).to_bytes()
        out.append(RtpPacket(payload_type, sequence + len(out), timestamp, ssrc, payload, i == 1))
    for _ in range(3):
        payload = DtmfEvent(event, True, 10, steps * 160).to_bytes()
        out.append(RtpPacket(payload_type, sequence + len(out), timestamp, ssrc, payload))
    return out


# --------------------------------------------------------------------------- G.711

_BIAS = 0x84
_CLIP = 32635


def _linear_to_ulaw(sample: int) -> int:
    # G.711 works on 14-bit magnitudes: shift first (floor), as the reference coder does.
    value = sample >> 2
    sign = 0x80 if value < 0 else 0
    magnitude = min(-value if value < 0 else value, _CLIP >> 2) + (_BIAS >> 2)
    exponent = max(0, magnitude.bit_length() - 6)
    mantissa = (magnitude >> (exponent + 1)) & 0x0F
    return ~(sign | (exponent << 4) | mantissa) & 0xFF


def _ulaw_to_linear(byte: int) -> int:
    byte = ~byte & 0xFF
    sign = byte & 0x80
    exponent = (byte >> 4) & 0x07
    mantissa = byte & 0x0F
    sample = ((mantissa << 3) + _BIAS) << exponent
    sample -= _BIAS
    return -sample if sign else sample


def _linear_to_alaw(sample: int) -> int:
    sign = 0x00 if sample < 0 else 0x80
    if sample < 0:
        sample = -sample - 1 if sample > -32768 else 32767
    sample = min(sample, 32767) >> 3
    if sample < 32:
        code = sample >> 1
    else:
        exponent = sample.bit_length() - 5
        code = (exponent << 4) | ((sample >> exponent) & 0x0F)
    return (code | sign) ^ 0x55


def _alaw_to_linear(byte: int) -> int:
    byte ^= 0x55
    sign = byte & 0x80
    exponent = (byte >> 4) & 0x07
    mantissa = byte & 0x0F
    base = (mantissa << 4) + (8 if exponent == 0 else 0x108)
    sample = base << (exponent - 1) if exponent else base
    return sample if sign else -sample


ULAW_TO_LINEAR = [_ulaw_to_linear(b) for b in range(256)]
ALAW_TO_LINEAR = [_alaw_to_linear(b) for b in range(256)]
ULAW_TO_ALAW = bytes(_linear_to_alaw(ULAW_TO_LINEAR[b]) for b in range(256))
ALAW_TO_ULAW = bytes(_linear_to_ulaw(ALAW_TO_LINEAR[b]) for b in range(256))
ULAW_SILENCE = 0xFF
ALAW_SILENCE = 0xD5


def linear_to_ulaw(sample: int) -> int:
    return _linear_to_ulaw(sample)


def linear_to_alaw(sample: int) -> int:
    return _linear_to_alaw(sample)


def transcode(payload: bytes, from_pt: int, to_pt: int) -> bytes:
    """Convert G.711 between µ-law (0) and A-law (8); same law is returned as is."""
    if from_pt == to_pt:
        return payload
    if from_pt == PCMU_PT and to_pt == PCMA_PT:
        return payload.translate(ULAW_TO_ALAW)
    if from_pt == PCMA_PT and to_pt == PCMU_PT:
        return payload.translate(ALAW_TO_ULAW)
    raise RtpError(f"cannot transcode PT {from_pt} to {to_pt}")
