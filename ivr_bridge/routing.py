"""Where the outgoing leg goes (the brochure's "default calling address" and "forced").

Decision (documented in docs/ivr_bridge.md):

* a destination that is a SIP URI (``sip:user@host[:port]``, only possible through a DID
  mapping or an API, never from DTMF) goes to its own host, unless routing is *forced*;
* every other destination (digits dialled by the caller, or a DID's forwarded number) goes
  to the default calling address ``host[:port]`` (the gateway), as ``sip:<digits>@gateway``;
* *forced* sends everything, SIP URIs included (their user part), to the gateway;
* with no gateway configured, digits cannot be routed: the call fails ("no route").
"""

from __future__ import annotations

from dataclasses import dataclass

from ivr_bridge.sip.message import SipParseError, parse_uri


class NoRoute(LookupError):
    pass


@dataclass(frozen=True, slots=True)
class Route:
    uri: str  # Request-URI of the outgoing INVITE
    host: str
    port: int


def parse_hostport(text: str) -> tuple[str, int]:
    text = text.strip()
    if text.lower().startswith("sip:"):
        text = text[4:]
    host, _, port = text.rpartition(":") if ":" in text else (text, "", "")
    if not host:
        host, port = text, ""
    if port and not port.isdigit():
        raise NoRoute(f"bad calling address {text!r}")
    return host, int(port) if port else 5060


def route(destination: str, default_address: str, forced: bool) -> Route:
    dest = destination.strip()
    is_uri = dest.lower().startswith(("sip:", "sips:"))
    user = dest
    if is_uri:
        try:
            uri = parse_uri(dest)
        except SipParseError as exc:
            raise NoRoute(str(exc)) from None
        user = uri.user
        if not forced and uri.host:
            host, port = uri.hostport
            return Route(f"sip:{user}@{host}:{port}", host, port)
    if not default_address.strip():
        raise NoRoute(f"no default calling address to reach {destination!r}")
    host, port = parse_hostport(default_address)
    return Route(f"sip:{user}@{host}:{port}", host, port)
