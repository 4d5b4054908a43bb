"""Diameter over TLS/TCP (RFC 6733 13) with mutual certificate authentication.

Certificates are made at test time (`tls_certs.TestPki`, the openssl CLI). Clients: our
`GyClient`, and freeDiameter (`freeDiameterd`, GnuTLS) connecting as a TLS client of the
OCS. python-diameter's `Node` cannot take part: its transport is plain TCP/SCTP sockets
with no TLS support at all (nothing in `diameter/node` imports `ssl`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pty
import shutil
import ssl
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from ocs.config import Settings
from ocs.diameter import CapabilitiesRefused, DiameterServer, GyClient, PeerGone
from ocs.diameter.errors import RequestTimeout
from ocs.diameter.memory import MemoryHandler
from ocs.diameter.tls import client_context, server_context
from tests.conftest import unavailable
from tests.integration.tls_certs import Cert, TestPki

DEADLINE = 20.0


async def until(cond: object, what: str, timeout: float = DEADLINE) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not cond():  # type: ignore[operator]
        if loop.time() > end:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPki:
    return TestPki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
async def server(pki: TestPki) -> AsyncIterator[DiameterServer]:
    cert = pki.issue("ocs.test")
    srv = DiameterServer(MemoryHandler(balances={"5173": 100_000}), host="127.0.0.1", port=0,
                         origin_host="ocs.test", realm="test",
                         allowed_peers=["ivr.test", "fd.test", "*.ims.test"],
                         tls=server_context(cert.cert, cert.key, pki.ca.cert), tls_port=0,
                         tw=30.0)
    await srv.start()
    yield srv
    await srv.stop(grace=0.2)


def tls_client(srv: DiameterServer, pki: TestPki, origin: str, cert: Cert | None, *,
               server_hostname: str = "ocs.test") -> GyClient:
    ctx = client_context(pki.ca.cert, cert.cert if cert else None, cert.key if cert else None)
    return GyClient("127.0.0.1", srv.bound_tls_port, origin, "test", ssl=ctx,
                    server_hostname=server_hostname, timeout=5.0)


async def test_a_call_over_tls_with_both_certificates(server: DiameterServer,
                                                      pki: TestPki) -> None:
    async with tls_client(server, pki, "ivr.test", pki.issue("ivr.test")) as gy:
        proto = gy._proto
        assert proto is not None and proto.transport is not None
        assert proto.transport.get_extra_info("ssl_object").version() in ("TLSv1.2", "TLSv1.3")
        sid = gy.new_session_id()
        a = await gy.initial(sid, "5173", "0141587070", requested_time=30)
        assert a.result_code == 2001 and a.mscc is not None
        a = await gy.terminate(sid, used_time=10)
        assert a.result_code == 2001 and a.remaining_balance == 98_000
        assert server.open_peers == ["ivr.test"]


async def test_a_wildcard_certificate_proves_any_host_of_its_domain(
        server: DiameterServer, pki: TestPki) -> None:
    cert = pki.issue("*.ims.test", file_stem="wild")
    async with tls_client(server, pki, "pcscf.ims.test", cert) as gy:
        assert gy.is_open


async def test_an_origin_host_that_is_not_the_certificate_is_refused_3010(
        server: DiameterServer, pki: TestPki) -> None:
    # a peer in the list, but whose certificate names another host
    with pytest.raises(CapabilitiesRefused) as err:
        await tls_client(server, pki, "ivr.test", pki.issue("fd.test")).connect()
    assert err.value.result_code == 3010
    assert server.open_peers == []


async def test_a_client_without_a_certificate_never_reaches_cer(
        server: DiameterServer, pki: TestPki, caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises((ssl.SSLError, OSError, PeerGone, RequestTimeout)):
        await tls_client(server, pki, "ivr.test", None).connect()
    await until(lambda: server.tls_refused == 1, "the OCS to count the refused handshake")
    assert server.open_peers == []
    # one warning line of ours, not asyncio's traceback
    assert not [r for r in caplog.records if r.name == "asyncio" and r.levelname == "ERROR"]


async def test_a_certificate_from_another_ca_is_refused(
        server: DiameterServer, pki: TestPki, tmp_path: Path) -> None:
    rogue = TestPki(tmp_path / "rogue", "rogue CA")
    with pytest.raises((ssl.SSLError, OSError, PeerGone, RequestTimeout)):
        await tls_client(server, pki, "ivr.test", rogue.issue("ivr.test")).connect()
    await until(lambda: server.tls_refused == 1, "the OCS to count the refused handshake")
    assert server.open_peers == []


async def test_the_client_checks_the_server_certificate(server: DiameterServer,
                                                        pki: TestPki) -> None:
    gy = tls_client(server, pki, "ivr.test", pki.issue("ivr.test"),
                    server_hostname="other-ocs.test")
    with pytest.raises(ssl.SSLCertVerificationError):
        await gy.connect()


async def test_the_plain_port_still_serves_next_to_tls(server: DiameterServer) -> None:
    async with GyClient("127.0.0.1", server.bound_port, "ivr.test", "test") as gy:
        a = await gy.event("5173")
        assert a.result_code == 2001


async def test_ocs_serve_listens_for_tls_with_the_settings(
        settings: Settings, pki: TestPki, caplog: pytest.LogCaptureFixture) -> None:
    import logging
    import re

    from ocs import serve as serve_module

    caplog.set_level(logging.INFO, logger="ocs.diameter.server")
    cert = pki.issue("ocs.localdomain")
    # port 0: the kernel picks free ports, read back from what `ocs serve` logs
    s = replace(settings, diameter_port=0, diameter_tls_port=0,
                diameter_tls_cert=cert.cert, diameter_tls_key=cert.key,
                diameter_tls_ca=pki.ca.cert, diameter_peers=("sw.localdomain",))
    ready = asyncio.Event()
    task = asyncio.create_task(serve_module.serve(s, only={"ocs"}, ready=ready))
    try:
        await asyncio.wait_for(ready.wait(), 60)
        ctx = client_context(pki.ca.cert, *_pair(pki.issue("sw.localdomain")))
        found = re.search(r"Diameter over TLS on \S+:(\d+)", caplog.text)
        assert found, "ocs serve did not log its TLS port"
        async with GyClient("127.0.0.1", int(found[1]), "sw.localdomain", "localdomain",
                            ssl=ctx, server_hostname="ocs.localdomain") as gy:
            a = await gy.event("1001")
            assert a.result_code == 5030  # no such account: the engine answered over TLS
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def _pair(c: Cert) -> tuple[Path, Path]:
    return c.cert, c.key


# ---- freeDiameter as a TLS client -----------------------------------------------------


@pytest.fixture
def freediameter() -> Iterator[str]:
    exe = shutil.which("freeDiameterd")
    if exe is None:
        unavailable("freeDiameterd (Debian package freediameterd)")
    yield exe


def fd_config(folder: Path, identity: str, cert: Cert, ca: Path, port: int) -> Path:
    conf = folder / f"{identity}.conf"
    conf.write_text(f"""\
Identity = "{identity}";
Realm = "test";
Port = 0;          # no plain listener
SecPort = 0;       # no TLS listener: it is only a client here
No_SCTP;
No_IPv6;
TLS_Cred = "{cert.cert}", "{cert.key}";
TLS_CA = "{ca}";
# RFC 6733 TLS (TLS from the first byte on the server's TLS port) is freeDiameter's default
ConnectPeer = "ocs.test" {{ ConnectTo = "127.0.0.1"; Port = {port}; No_SCTP; TwTimer = 6; }};
""")
    return conf


class FreeDiameter:
    """freeDiameterd with its log on a pseudo-terminal, so that it comes line by line (into a
    file, it is block-buffered and only shows up at exit)."""

    def __init__(self, proc: asyncio.subprocess.Process, master: int, log: Path) -> None:
        self.proc, self.master, self.log = proc, master, log
        self._text = b""

    @classmethod
    async def start(cls, exe: str, conf: Path, log: Path) -> FreeDiameter:
        master, slave = pty.openpty()
        try:
            proc = await asyncio.create_subprocess_exec(exe, "-c", str(conf), "-d",
                                                        stdout=slave, stderr=slave)
        finally:
            os.close(slave)
        os.set_blocking(master, False)
        fd = cls(proc, master, log)
        # drain as it comes: a full terminal buffer would block its logging (and its peers)
        asyncio.get_running_loop().add_reader(master, fd._drain)
        return fd

    def _drain(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            while chunk := os.read(self.master, 65536):
                self._text += chunk

    def text(self) -> str:
        self._drain()
        return self._text.decode(errors="replace")

    async def stop(self) -> None:
        if self.proc.returncode is None:
            self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), 10)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        self.log.write_text(self.text())  # kept for a failing run
        asyncio.get_running_loop().remove_reader(self.master)
        os.close(self.master)


async def test_freediameter_connects_over_tls_and_keeps_the_watchdog(
        freediameter: str, pki: TestPki, tmp_path: Path) -> None:
    cert = pki.issue("ocs.test")
    srv = DiameterServer(MemoryHandler(), host="127.0.0.1", port=0, origin_host="ocs.test",
                         realm="test", allowed_peers=["fd.test"],
                         tls=server_context(cert.cert, cert.key, pki.ca.cert), tls_port=0,
                         tw=2.0)  # we send DWR after 2 s idle; no DWA within 2 s more closes
    await srv.start()
    fd = await FreeDiameter.start(freediameter, fd_config(
        tmp_path, "fd.test", pki.issue("fd.test"), pki.ca.cert, srv.bound_tls_port),
        tmp_path / "fd.log")
    try:
        await until(lambda: srv.open_peers == ["fd.test"], "freeDiameter to open over TLS")
        conn = next(iter(srv._connections))
        assert conn.tls and conn.peer is not None
        opened_rx = conn.peer.last_rx
        # several watchdog rounds later it is still the same open connection
        await until(lambda: conn.peer is not None and conn.peer.last_rx > opened_rx + 4,
                    "DWR/DWA rounds over TLS")
        assert srv.open_peers == ["fd.test"] and not conn.closed
        text = fd.text()
        assert "'STATE_OPEN'" in text and "TLS" in text
    finally:
        await fd.stop()
        await srv.stop(grace=0.5)


async def test_freediameter_with_a_certificate_from_another_ca_is_refused(
        freediameter: str, pki: TestPki, tmp_path: Path) -> None:
    """freeDiameter itself refuses to start with a certificate that is not its Identity, so
    the identity check is covered by our client above; here its certificate is genuine but
    signed by a CA the OCS does not trust: the OCS refuses the handshake, no CER is read."""
    rogue = TestPki(tmp_path / "rogue", "rogue CA")
    # the server's own certificate comes from that CA too, so that freeDiameter (which
    # takes a single CA file) accepts the server; the server trusts only `pki.ca` for peers
    cert = rogue.issue("ocs.test")
    srv = DiameterServer(MemoryHandler(), host="127.0.0.1", port=0, origin_host="ocs.test",
                         realm="test", allowed_peers=["fd.test"],
                         tls=server_context(cert.cert, cert.key, pki.ca.cert), tls_port=0)
    await srv.start()
    fd = await FreeDiameter.start(freediameter, fd_config(
        tmp_path, "fd.test", rogue.issue("fd.test"), rogue.ca.cert, srv.bound_tls_port),
        tmp_path / "fd.log")
    try:
        await until(lambda: srv.tls_refused >= 1, "the OCS to refuse the handshake")
        assert srv.open_peers == []
    finally:
        await fd.stop()
        await srv.stop(grace=0.5)
