"""Named exceptions of the Diameter layer.

Why this exists: callers (the charging engine through `PeerGateway`, the IVR bridge and the
CLI through `GyClient`) need to tell "the peer is gone" from "it did not answer in time"
from "it answered with an error" without parsing strings.
"""

from __future__ import annotations


class DiameterError(Exception):
    """Base class of every error raised by `ocs.diameter`."""


class FramingError(DiameterError):
    """The byte stream cannot be split into messages any more; the connection must close."""


class ProtocolError(DiameterError):
    """A received message breaks the protocol in a way that is answered with a Result-Code.

    `failed_avp` holds the encoded AVP(s) to put inside Failed-AVP (may be empty).
    """

    def __init__(self, result_code: int, message: str, failed_avp: bytes = b"") -> None:
        super().__init__(f"{result_code}: {message}")
        self.result_code = result_code
        self.message = message
        self.failed_avp = failed_avp


class PeerGone(DiameterError):
    """No open connection to the peer that owns the session (or it closed meanwhile)."""


class UnknownSession(PeerGone):
    """The session was never seen, or has ended, so there is no peer to send to."""


class RequestTimeout(DiameterError):
    """The peer did not answer a request in time."""


class CapabilitiesRefused(DiameterError):
    """The server answered our CER with an error Result-Code (e.g. 3010 unknown peer)."""

    def __init__(self, result_code: int) -> None:
        super().__init__(f"CER refused with Result-Code {result_code}")
        self.result_code = result_code
