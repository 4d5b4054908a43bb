"""SIP messages (RFC 3261 §7): strict parsing and serialisation, no I/O.

Only what a UDP user agent needs: request/status line, headers (compact forms expanded,
multi-valued headers kept in order), body by Content-Length, and helpers for the header
parameters a dialog uses (tags, Via branch, URIs in name-addr).
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field

SIP_VERSION = "SIP/2.0"
MAGIC_COOKIE = "z9hG4bK"

_COMPACT = {
    "i": "Call-ID",
    "m": "Contact",
    "e": "Content-Encoding",
    "l": "Content-Length",
    "c": "Content-Type",
    "f": "From",
    "s": "Subject",
    "k": "Supported",
    "t": "To",
    "v": "Via",
}
_CANONICAL = {
    name.lower(): name
    for name in (
        "Call-ID", "Contact", "Content-Length", "Content-Type", "CSeq", "From", "To", "Via",
        "Max-Forwards", "Allow", "Supported", "User-Agent", "Server", "Accept", "Route",
        "Record-Route", "Content-Encoding", "Subject", "Expires", "Event", "Reason",
    )
}  # fmt: skip
_TOKEN = re.compile(r"^[A-Za-z0-9.!%*_+`'~\-]+$")
_STATUS_LINE = re.compile(r"^SIP/2\.0 ([1-6][0-9]{2}) ?(.*)$")
_REQUEST_LINE = re.compile(r"^([A-Za-z0-9.!%*_+`'~\-]+) (\S+) SIP/2\.0$")
MAX_MESSAGE = 65535


class SipParseError(ValueError):
    """The datagram is not a well-formed SIP message."""


def canonical(name: str) -> str:
    lower = name.strip().lower()
    if lower in _COMPACT:
        return _COMPACT[lower]
    return _CANONICAL.get(lower, "-".join(p.capitalize() for p in lower.split("-")))


@dataclass(slots=True)
class SipMessage:
    """A request (method set) or a response (status set)."""

    method: str | None = None
    uri: str | None = None
    status: int | None = None
    reason: str = ""
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    @property
    def is_request(self) -> bool:
        return self.method is not None

    # ---------------------------------------------------------------- headers

    def get(self, name: str, default: str | None = None) -> str | None:
        key = canonical(name)
        for hname, value in self.headers:
            if hname == key:
                return value
        return default

    def header(self, name: str) -> str:
        value = self.get(name)
        if value is None:
            raise SipParseError(f"missing {canonical(name)} header")
        return value

    def get_all(self, name: str) -> list[str]:
        key = canonical(name)
        out: list[str] = []
        for hname, value in self.headers:
            if hname == key:
                # Via, Route, Record-Route may be comma lists
                if key in ("Via", "Route", "Record-Route"):
                    out += [v.strip() for v in split_commas(value)]
                else:
                    out.append(value)
        return out

    def set(self, name: str, value: str) -> None:
        key = canonical(name)
        self.headers = [(h, v) for h, v in self.headers if h != key]
        self.headers.append((key, value))

    def add(self, name: str, value: str) -> None:
        self.headers.append((canonical(name), value))

    # ---------------------------------------------------------------- dialog helpers

    @property
    def call_id(self) -> str:
        return self.header("Call-ID")

    @property
    def cseq(self) -> tuple[int, str]:
        raw = self.header("CSeq").split()
        if len(raw) != 2 or not (raw[0].isascii() and raw[0].isdigit()):  # not "①"
            raise SipParseError("malformed CSeq")
        return int(raw[0]), raw[1].upper()

    @property
    def from_tag(self) -> str | None:
        return header_param(self.header("From"), "tag")

    @property
    def to_tag(self) -> str | None:
        return header_param(self.header("To"), "tag")

    @property
    def branch(self) -> str | None:
        vias = self.get_all("Via")
        return header_param(vias[0], "branch") if vias else None

    # ---------------------------------------------------------------- wire

    def to_bytes(self) -> bytes:
        if self.method is not None:
            first = f"{self.method} {self.uri} {SIP_VERSION}"
        else:
            first = f"{SIP_VERSION} {self.status} {self.reason}"
        lines = [first]
        for name, value in self.headers:
            if name != "Content-Length":
                lines.append(f"{name}: {value}")
        lines.append(f"Content-Length: {len(self.body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + self.body


def split_commas(value: str) -> list[str]:
    """Split a header value on commas outside quotes and <>."""
    parts: list[str] = []
    depth = 0
    quoted = False
    start = 0
    for i, ch in enumerate(value):
        if ch == '"' and (i == 0 or value[i - 1] != "\\"):
            quoted = not quoted
        elif not quoted and ch == "<":
            depth += 1
        elif not quoted and ch == ">":
            depth -= 1
        elif ch == "," and not quoted and depth == 0:
            parts.append(value[start:i])
            start = i + 1
    parts.append(value[start:])
    return [p for p in (x.strip() for x in parts) if p]


def parse(data: bytes) -> SipMessage:
    """Parse one datagram. Raises SipParseError on anything malformed."""
    if len(data) > MAX_MESSAGE:
        raise SipParseError("message too large")
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        head, sep, body = data.partition(b"\n\n")
        if not sep:
            raise SipParseError("no end of headers")
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        raise SipParseError("headers are not UTF-8") from None
    lines = text.replace("\r\n", "\n").split("\n")
    first = lines[0].strip()
    msg = SipMessage()
    if m := _STATUS_LINE.match(first):
        msg.status = int(m.group(1))
        msg.reason = m.group(2)
    elif m := _REQUEST_LINE.match(first):
        msg.method = m.group(1).upper()
        msg.uri = m.group(2)
    else:
        raise SipParseError(f"bad start line: {first[:80]!r}")
    unfolded: list[str] = []
    for line in lines[1:]:
        if not line:
            continue
        if line[0] in " \t":  # header folding (RFC 3261 §7.3.1)
            if not unfolded:
                raise SipParseError("continuation line without a header")
            unfolded[-1] += " " + line.strip()
        else:
            unfolded.append(line)
    for line in unfolded:
        name, colon, value = line.partition(":")
        if not colon or not _TOKEN.match(name.strip()):
            raise SipParseError(f"bad header line: {line[:80]!r}")
        msg.headers.append((canonical(name), value.strip()))
    length = msg.get("Content-Length")
    if length is not None:
        if not (length.strip().isascii() and length.strip().isdigit()):  # not "²"
            raise SipParseError("bad Content-Length")
        n = int(length)
        if n > len(body):
            raise SipParseError("body shorter than Content-Length")
        body = body[:n]
    msg.body = body
    for required in ("Via", "From", "To", "Call-ID", "CSeq"):
        if msg.get(required) is None:
            raise SipParseError(f"missing {required} header")
    _ = msg.cseq
    return msg


# --------------------------------------------------------------------------- parameters


def header_param(value: str, name: str) -> str | None:
    """A ;param of a header value (outside the <uri>), e.g. the tag of From/To."""
    rest = value.rsplit(">", 1)[1] if ">" in value else value
    for part in rest.split(";")[1:]:
        key, _, val = part.partition("=")
        if key.strip().lower() == name.lower():
            return val.strip()
    return None


def name_addr_uri(value: str) -> str:
    """The URI of a name-addr or addr-spec ("Bob" <sip:bob@h>;tag=1 -> sip:bob@h)."""
    if "<" in value:
        start = value.index("<") + 1
        end = value.index(">", start)
        return value[start:end].strip()
    return value.split(";", 1)[0].strip()


@dataclass(frozen=True, slots=True)
class SipUri:
    user: str
    host: str
    port: int | None = None

    @property
    def hostport(self) -> tuple[str, int]:
        return self.host, self.port or 5060

    def __str__(self) -> str:
        user = f"{self.user}@" if self.user else ""
        port = f":{self.port}" if self.port else ""
        return f"sip:{user}{self.host}{port}"


def parse_uri(uri: str) -> SipUri:
    text = uri.strip()
    lower = text.lower()
    for scheme in ("sip:", "sips:", "tel:"):
        if lower.startswith(scheme):
            text = text[len(scheme) :]
            break
    else:
        raise SipParseError(f"unsupported URI {uri!r}")
    text = text.split(";", 1)[0].split("?", 1)[0]
    user, at, hostport = text.rpartition("@")
    if not at:
        user, hostport = "", text
    if lower.startswith("tel:"):
        return SipUri(user=hostport, host="")
    host, _, port = hostport.partition(":")
    if hostport.startswith("["):
        host, _, port = hostport[1:].partition("]")
        port = port.lstrip(":")
    if port and not port.isdigit():
        raise SipParseError(f"bad port in {uri!r}")
    return SipUri(user=user, host=host, port=int(port) if port else None)


def new_tag() -> str:
    return secrets.token_hex(6)


def new_branch() -> str:
    return MAGIC_COOKIE + secrets.token_hex(8)


def new_call_id(host: str) -> str:
    return f"{secrets.token_hex(10)}@{host}"


def response_to(
    request: SipMessage, status: int, reason: str, *, to_tag: str | None = None
) -> SipMessage:
    """A response copying Via, From, To (adding our tag), Call-ID, CSeq (RFC 3261 §8.2.6)."""
    resp = SipMessage(status=status, reason=reason)
    for name, value in request.headers:
        if name in ("Via", "From", "Call-ID", "CSeq"):
            resp.headers.append((name, value))
        elif name == "To":
            if to_tag and header_param(value, "tag") is None and status != 100:
                value = f"{value};tag={to_tag}"
            resp.headers.append((name, value))
    return resp
