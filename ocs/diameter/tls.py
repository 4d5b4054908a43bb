"""Diameter over TLS/TCP (RFC 6733 section 13): TLS contexts and certificate identities.

Why this exists: RFC 6733 runs TLS from the first byte on its own port (5658 by convention;
the RFC 3588 in-band Inband-Security-Id upgrade is not offered) and authenticates both
sides with certificates. The server requires a client certificate signed by the configured
CA and then checks that the Origin-Host the peer claims in its CER is a name of that
certificate (`peer.certificate_admits`). This module only builds `ssl` contexts and reads
names out of a verified certificate; the sockets stay in `server` and `client`.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

__all__ = ["DEFAULT_TLS_PORT", "certificate_names", "client_context", "server_context"]

DEFAULT_TLS_PORT = 5658


def _base(purpose: ssl.Purpose, cert: Path | str | None, key: Path | str | None,
          ca: Path | str) -> ssl.SSLContext:
    ctx = ssl.create_default_context(purpose, cafile=str(ca))
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2  # RFC 6733 13.1 asks for TLS 1.2 or later
    if cert is not None:
        ctx.load_cert_chain(str(cert), str(key) if key is not None else None)
    return ctx


def server_context(cert: Path | str, key: Path | str, ca: Path | str) -> ssl.SSLContext:
    """Server side: our certificate, and a client certificate signed by `ca` is required."""
    ctx = _base(ssl.Purpose.CLIENT_AUTH, cert, key, ca)
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def client_context(ca: Path | str, cert: Path | str | None = None,
                   key: Path | str | None = None, *,
                   check_hostname: bool = True) -> ssl.SSLContext:
    """Client side: verify the server against `ca` and present our certificate.

    With `check_hostname`, the name given as `server_hostname` when connecting (the
    server's Diameter identity) must be in the server's certificate.
    """
    ctx = _base(ssl.Purpose.SERVER_AUTH, cert, key, ca)
    ctx.check_hostname = check_hostname
    return ctx


def certificate_names(peercert: dict[str, Any] | None) -> tuple[str, ...]:
    """The DNS names a verified certificate was issued to: its subjectAltName DNS entries,
    or its subject commonName when it has none (RFC 6125 6.4.4)."""
    if not peercert:
        return ()
    dns = tuple(str(v) for k, v in peercert.get("subjectAltName", ()) if k == "DNS")
    if dns:
        return dns
    return tuple(str(v) for rdn in peercert.get("subject", ()) for k, v in rdn
                 if k == "commonName")
