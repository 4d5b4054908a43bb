"""SDP offer/answer (RFC 3264) for one audio stream: PCMU/PCMA + telephone-event.

Pure: parse an offer, pick a codec, build an answer or an offer.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

PCMU = 0
PCMA = 8
STATIC_CODECS = {PCMU: "PCMU", PCMA: "PCMA"}
DEFAULT_DTMF_PT = 101


class SdpError(ValueError):
    pass


class NoCommonCodec(SdpError):
    pass


@dataclass(frozen=True, slots=True)
class MediaDescription:
    """The negotiated (or offered) audio stream of one side."""

    address: str
    port: int
    payload_types: tuple[int, ...]
    dtmf_pt: int | None
    direction: str = "sendrecv"

    @property
    def codec(self) -> int:
        """The first offered payload type we support (PCMU or PCMA)."""
        for pt in self.payload_types:
            if pt in STATIC_CODECS:
                return pt
        raise NoCommonCodec("no PCMU/PCMA in the offer")


def parse(body: bytes | str) -> MediaDescription:
    text = body.decode() if isinstance(body, bytes) else body
    session_addr: str | None = None
    media_addr: str | None = None
    port: int | None = None
    pts: tuple[int, ...] = ()
    rtpmap: dict[int, str] = {}
    direction = "sendrecv"
    in_audio = False
    seen_audio = False
    for raw in text.splitlines():
        line = raw.strip()
        if len(line) < 2 or line[1] != "=":
            continue
        kind, value = line[0], line[2:]
        if kind == "m":
            in_audio = value.startswith("audio ") and not seen_audio
            if in_audio:
                seen_audio = True
                fields = value.split()
                port_text = fields[1].split("/")[0] if len(fields) >= 4 else ""
                if not (port_text.isascii() and port_text.isdigit()) or int(port_text) > 65535:
                    raise SdpError(f"bad m= line: {value!r}")
                if not fields[2].startswith("RTP/AVP"):
                    raise SdpError(f"unsupported transport {fields[2]!r}")
                port = int(fields[1].split("/")[0])
                try:
                    pts = tuple(int(f) for f in fields[3:])
                except ValueError:
                    raise SdpError(f"bad payload types: {value!r}") from None
        elif kind == "c":
            fields = value.split()
            if len(fields) != 3 or fields[0] != "IN":
                raise SdpError(f"bad c= line: {value!r}")
            addr = fields[2].split("/")[0]
            if in_audio:
                media_addr = addr
            elif not seen_audio:
                session_addr = addr
        elif kind == "a" and in_audio:
            if value.startswith("rtpmap:"):
                pt_text, _, encoding = value[7:].partition(" ")
                if pt_text.isdigit():
                    rtpmap[int(pt_text)] = encoding.strip().lower()
            elif value in ("sendrecv", "sendonly", "recvonly", "inactive"):
                direction = value
    if port is None:
        raise SdpError("no audio stream")
    address = media_addr or session_addr
    if address is None:
        raise SdpError("no connection address")
    dtmf = next((pt for pt in pts if rtpmap.get(pt, "").startswith("telephone-event/8000")), None)
    return MediaDescription(address, port, pts, dtmf, direction)


def build(
    address: str,
    port: int,
    codec: int,
    dtmf_pt: int | None,
    *,
    session_id: int | None = None,
    version: int = 1,
    extra_codecs: tuple[int, ...] = (),
) -> bytes:
    """An SDP body with one audio stream (codec first, then extras, then telephone-event)."""
    sid = session_id if session_id is not None else int(time.time())
    pts = [codec, *[c for c in extra_codecs if c != codec]]
    if dtmf_pt is not None:
        pts.append(dtmf_pt)
    lines = [
        "v=0",
        f"o=ivr-bridge {sid} {version} IN IP4 {address}",
        "s=ivr-bridge",
        f"c=IN IP4 {address}",
        "t=0 0",
        f"m=audio {port} RTP/AVP {' '.join(str(p) for p in pts)}",
    ]
    for pt in pts:
        if pt in STATIC_CODECS:
            lines.append(f"a=rtpmap:{pt} {STATIC_CODECS[pt]}/8000")
    if dtmf_pt is not None:
        lines += [f"a=rtpmap:{dtmf_pt} telephone-event/8000", f"a=fmtp:{dtmf_pt} 0-16"]
    lines += ["a=ptime:20", "a=sendrecv"]
    return ("\r\n".join(lines) + "\r\n").encode()


def answer(offer: MediaDescription, address: str, port: int) -> tuple[bytes, int, int | None]:
    """Answer an offer: (body, chosen codec, telephone-event PT or None)."""
    codec = offer.codec
    body = build(address, port, codec, offer.dtmf_pt)
    return body, codec, offer.dtmf_pt
