"""Diameter Gy/Ro protocol layer of the OCS (RFC 6733 base, RFC 4006 credit control).

Why this package exists: everything between TCP bytes and the protocol-neutral
`ocs.credit_control` types — framing and raw codec (`codec`, `ccr`, `cca`), grammar
validation (`grammar`), the sans-I/O peer state machine (`peer`), the asyncio server
(`server`, also the `PeerGateway`) and client (`client`), and the `ocs client` CLI.
"""

from .client import GyClient
from .errors import (
    CapabilitiesRefused,
    DiameterError,
    FramingError,
    PeerGone,
    ProtocolError,
    RequestTimeout,
    UnknownSession,
)
from .server import DiameterServer

__all__ = [
    "CapabilitiesRefused",
    "DiameterError",
    "DiameterServer",
    "FramingError",
    "GyClient",
    "PeerGone",
    "ProtocolError",
    "RequestTimeout",
    "UnknownSession",
]
