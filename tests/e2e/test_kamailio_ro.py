"""SIP calls through a real Kamailio (ims_charging, an IMS Ro client) charged by `ocs serve`.

Nothing is faked: `ocs serve` runs in a subprocess on SQLite prepared with its CLI; Kamailio
5.6 (Debian `kamailio` + `kamailio-ims-modules`) runs the shipped integration example
`docs/integrations/kamailio/kamailio.cfg` with its cdp file `ro-client.xml` (only names and
ports are set for the test); SIPp plays the caller and the callee (`tests/e2e/sipp/`).

- a granted call is charged exactly what Kamailio reports;
- no credit: the OCS answers 4012 and the caller gets SIP 402;
- the last units (Final-Unit-Indication TERMINATE): Kamailio ends the call, BYE to both legs;
- an operator kill (`ocs session kill`): Kamailio never answers the ASR, so the call must end
  at its next CCR-Update, which the charging engine refuses with a top-level 4012.

Kamailio's grants here are RO_UNITS = 10 s with the CCR-Update 5 s before they run out.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import unavailable

pytestmark = pytest.mark.kamailio

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "docs" / "integrations" / "kamailio"
SCENARIOS = Path(__file__).resolve().parent / "sipp"
MODULES = Path("/usr/lib/x86_64-linux-gnu/kamailio/modules")
OCS = (sys.executable, "-m", "ocs.cli")

OCS_HOST = "localhost"  # cdp connects to its <Peer FQDN>: it must resolve
REALM = "ims.test"
KAMAILIO_HOST = "kamailio.ims.test"
DIALLED = "0141587070"  # DEFAULT tariff of the demo data
RATE = 200  # units per second
RO_UNITS = 10  # seconds asked per CCR-I / CCR-U
RO_TIMER_BUFFER = 5  # the CCR-U goes out this long before the grant runs out
DEADLINE = 60.0


def require_tools() -> None:
    for exe in ("kamailio", "sipp"):
        if shutil.which(exe) is None:
            unavailable(f"{exe} (Debian packages kamailio, kamailio-ims-modules, sip-tester)")
    for mod in ("ims_charging.so", "ims_dialog.so", "cdp.so", "cdp_avp.so"):
        if not (MODULES / mod).is_file():
            unavailable(f"Kamailio module {mod} (Debian package kamailio-ims-modules)")


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def poll(cond: Any, what: str, timeout: float = DEADLINE, every: float = 0.2) -> Any:
    """Call `cond()` until it returns something truthy; fail after `timeout` seconds."""
    end = time.monotonic() + timeout
    while True:
        got = cond()
        if got:
            return got
        if time.monotonic() > end:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(every)


def terminate(proc: subprocess.Popen[Any], grace: float = 10.0) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=grace)


@dataclass
class Sipp:
    name: str
    proc: subprocess.Popen[Any]
    log: Path
    errors: Path

    def wait(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"SIPp {self.name} still running after {timeout:.0f} s; "
                        f"{self.report()}")

    def report(self) -> str:
        errors = self.errors.read_text() if self.errors.exists() else ""
        return f"SIPp {self.name} errors:\n{errors[-3000:]}"


@dataclass
class RoStack:
    env: dict[str, str]
    folder: Path
    sip_port: int
    callee_port: int
    serve_log: Path
    kamailio_log: Path
    running: list[Sipp] = field(default_factory=list)

    def cli(self, *args: str, check: bool = True, timeout: float = 30.0) -> str:
        done = subprocess.run([*OCS, *args], env=self.env, capture_output=True, text=True,
                              timeout=timeout)
        if check:
            assert done.returncode == 0, (
                f"ocs {' '.join(args)} exited {done.returncode}\n{done.stdout}\n{done.stderr}")
        return done.stdout + done.stderr

    def cli_json(self, *args: str) -> Any:
        return json.loads(self.cli(*args, "--json"))

    def account(self, number: str, credit: int = 0) -> None:
        extra = ["--credit", str(credit)] if credit else []
        self.cli("account", "add", number, "--caller-id", number, *extra)

    def sipp(self, name: str, scenario: str, *args: str) -> Sipp:
        log, errors = self.folder / f"{name}.log", self.folder / f"{name}.errors.log"
        with log.open("w") as out:
            proc = subprocess.Popen(
                ["sipp", "-sf", str(SCENARIOS / scenario), "-i", "127.0.0.1", "-m", "1",
                 "-nostdin", "-trace_err", "-error_file", str(errors), *args],
                stdout=out, stderr=subprocess.STDOUT, cwd=self.folder)
        s = Sipp(name, proc, log, errors)
        self.running.append(s)
        return s

    def callee(self, name: str) -> Sipp:
        return self.sipp(name, "callee.xml", "-p", str(self.callee_port))

    def caller(self, name: str, scenario: str, number: str, *args: str) -> Sipp:
        return self.sipp(name, scenario, "-p", str(free_udp_port()), "-key", "caller", number,
                         "-s", DIALLED, *args, f"127.0.0.1:{self.sip_port}")

    def cdr_of(self, account: str) -> dict[str, Any] | None:
        items = [c for c in self.cli_json("cdr", "list")["items"] if c["user"] == account]
        return items[-1] if items else None

    def live(self, account: str) -> dict[str, Any] | None:
        items = [s for s in self.cli_json("session", "list") if s["account"] == account]
        return items[0] if items else None

    def logs(self) -> str:
        return (f"--- ocs serve ---\n{self.serve_log.read_text()[-4000:]}\n"
                f"--- kamailio ---\n{self.kamailio_log.read_text()[-4000:]}")


def cdp_config(folder: Path, diameter_port: int) -> Path:
    """The shipped ro-client.xml with the test's names and port (and nothing else)."""
    text = (EXAMPLE / "ro-client.xml").read_text()
    for old, new in (('FQDN="kamailio.ims.example.net"', f'FQDN="{KAMAILIO_HOST}"'),
                     ('Realm="ims.example.net"', f'Realm="{REALM}"'),
                     ('FQDN="ocs.ims.example.net"', f'FQDN="{OCS_HOST}"'),
                     ('port="3868"', f'port="{diameter_port}"')):
        assert old in text, f"ro-client.xml no longer has {old}"
        text = text.replace(old, new)
    out = folder / "ro-client.xml"
    out.write_text(text)
    return out


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RoStack]:
    require_tools()
    folder = tmp_path_factory.mktemp("kamailio")
    data = folder / "data"
    data.mkdir()
    sip_port, callee_port = free_udp_port(), free_udp_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("OCS_")}
    env.update({
        "OCS_DATA_DIR": str(data),
        "OCS_DATABASE_URL": f"sqlite://{data / 'ocs.sqlite3'}",
        "OCS_DIAMETER_HOST": "127.0.0.1",
        "OCS_DIAMETER_PORT": "0",  # the kernel picks it; read back from the serve log
        "OCS_DIAMETER_ORIGIN_HOST": OCS_HOST,
        "OCS_DIAMETER_REALM": REALM,
        "OCS_DIAMETER_PEERS": KAMAILIO_HOST,
        "OCS_WEB_HOST": "127.0.0.1",
        "OCS_WEB_PORT": "0",
        "OCS_SIP_HOST": "127.0.0.1",
        "OCS_SIP_PORT": str(free_udp_port()),
        "PYTHONUNBUFFERED": "1",
    })
    st = RoStack(env, folder, sip_port, callee_port, folder / "serve.log",
                 folder / "kamailio.log")
    st.cli("migrate")
    st.cli("demo")
    procs: list[subprocess.Popen[Any]] = []
    try:
        with st.serve_log.open("w") as out:
            procs.append(subprocess.Popen([*OCS, "serve", "--only", "ocs", "--only", "control"],
                                          env=env, stdout=out, stderr=subprocess.STDOUT))
        listening = poll(lambda: re.search(r"Diameter server on 127\.0\.0\.1:(\d+)",
                                           st.serve_log.read_text()), "ocs serve to listen", 60)
        diameter_port = int(listening[1])
        run = folder / "run"
        run.mkdir()
        defines = {
            "SIP_IP": "127.0.0.1", "SIP_PORT": str(sip_port),
            "CALLEE_ROUTE": f'"sip:127.0.0.1:{callee_port}"',
            "CDP_CONFIG": f'"{cdp_config(folder, diameter_port)}"',
            "RO_ORIGIN_HOST": f'"{KAMAILIO_HOST}"', "RO_ORIGIN_REALM": f'"{REALM}"',
            "OCS_HOST": f'"{OCS_HOST}"', "OCS_REALM": f'"{REALM}"',
            "RO_UNITS": str(RO_UNITS), "RO_TIMER_BUFFER": str(RO_TIMER_BUFFER),
        }
        args = ["kamailio", "-f", str(EXAMPLE / "kamailio.cfg"), "-L", str(MODULES),
                "-Y", str(run), "-P", str(run / "kamailio.pid"), "-m", "64", "-M", "8",
                "-DD", "-E"]
        for name, value in defines.items():
            args += ["-A", f"{name}={value}"]
        with st.kamailio_log.open("w") as out:
            procs.append(subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT,
                                          cwd=folder))
        poll(lambda: f"peer {KAMAILIO_HOST} ({REALM}) open" in st.serve_log.read_text()
             or procs[-1].poll() is not None, "Kamailio's CER to the OCS", 60)
        assert procs[-1].poll() is None, f"kamailio exited:\n{st.logs()}"
        yield st
    finally:
        for s in st.running:
            terminate(s.proc)
        for p in reversed(procs):
            terminate(p)


@pytest.fixture
def ro(stack: RoStack) -> Iterator[RoStack]:
    yield stack
    for s in stack.running:
        terminate(s.proc)
    stack.running.clear()


def test_a_granted_call_is_charged_what_kamailio_reports(ro: RoStack) -> None:
    ro.account("3001", 1_000_000)
    callee = ro.callee("granted-callee")
    caller = ro.caller("granted-caller", "caller_hangs_up.xml", "3001", "-d", "3000")
    assert caller.wait(DEADLINE) == 0, caller.report() + ro.logs()
    assert callee.wait(DEADLINE) == 0, callee.report() + ro.logs()
    cdr = poll(lambda: ro.cdr_of("3001"), "the CDR of the granted call")
    assert 3 <= cdr["duration"] <= 3 + RO_UNITS, cdr
    assert cdr["cost"] == cdr["duration"] * RATE and cdr["dialed"] == DIALLED, cdr
    account = ro.cli_json("account", "show", "3001")
    assert (account["balance"], account["reserved"]) == (1_000_000 - cdr["cost"], 0), account


def test_no_credit_is_4012_and_the_caller_gets_402(ro: RoStack) -> None:
    ro.account("3002")  # nothing on it
    caller = ro.caller("refused-caller", "caller_refused.xml", "3002")
    assert caller.wait(DEADLINE) == 0, caller.report() + ro.logs()  # it expects the 402
    assert "result 4012" in ro.kamailio_log.read_text()
    account = ro.cli_json("account", "show", "3002")
    assert (account["balance"], account["reserved"]) == (0, 0), account


def test_the_last_units_end_the_call_with_bye_to_both_legs(ro: RoStack) -> None:
    ro.account("3003", 6 * RATE)  # six seconds: the grant carries FUI TERMINATE
    callee = ro.callee("fui-callee")
    caller = ro.caller("fui-caller", "caller_waits_for_bye.xml", "3003")
    # both scenarios end only when they received the BYE Kamailio sends them
    assert caller.wait(DEADLINE) == 0, caller.report() + ro.logs()
    assert callee.wait(DEADLINE) == 0, callee.report() + ro.logs()
    cdr = poll(lambda: ro.cdr_of("3003"), "the CDR of the call cut on its last units")
    assert cdr["cost"] == 6 * RATE, cdr
    account = ro.cli_json("account", "show", "3003")
    assert (account["balance"], account["reserved"]) == (0, 0), account


def request_number(env: dict[str, str], session_id: str) -> int:
    """The session's last CC-Request-Number as the OCS stored it."""
    from ocs import db as ocs_db
    from ocs.config import load_settings
    from ocs.models import CreditSession

    async def read() -> int:
        await ocs_db.init_db(load_settings(env))
        try:
            row = await CreditSession.get(session_id=session_id)
            return int(row.last_request_number)
        finally:
            await ocs_db.close_db()

    return asyncio.run(read())


def test_an_operator_kill_ends_the_call_at_its_next_update(ro: RoStack) -> None:
    """Kamailio does not answer the ASR. The OCS must refuse the session's next CCR-U with
    top-level Result-Code 4012: ims_charging then ends the call (BYE to both legs) when the
    time already granted runs out. (A 2001 with a zero grant and FUI TERMINATE, or a 4012
    only inside the MSCC, makes it carry on for another whole grant: see README.md.)"""
    ro.account("3004", 1_000_000)
    callee = ro.callee("kill-callee")
    caller = ro.caller("kill-caller", "caller_waits_for_bye.xml", "3004")
    live = poll(lambda: ro.live("3004"), "the call to be live in the OCS")
    sid = live["session_id"]
    before = request_number(ro.env, sid)
    log_from = len(ro.kamailio_log.read_text())
    # the ASA never comes (Kamailio has no handler for it): the command reports a timeout
    ro.cli("session", "kill", sid, check=False)
    # the call must end at the next update: granted time left + one update at most
    deadline = RO_UNITS + RO_TIMER_BUFFER + 15
    assert caller.wait(deadline) == 0, caller.report() + ro.logs()
    assert callee.wait(deadline) == 0, callee.report() + ro.logs()
    cdr = poll(lambda: ro.cdr_of("3004"), "the CDR of the killed call")
    # at most one CCR-U after the kill (the refused one), then the CCR-T
    assert request_number(ro.env, sid) <= before + 2, cdr
    # and it was refused with the top-level 4012 that ends the call on time (ims_ro.c
    # resume_on_interim_ccr logs it), not with a zero grant that lets it run on
    after = ro.kamailio_log.read_text()[log_from:]
    assert "resume_on_interim_ccr(): Got bad CCA result code [4012]" in after, after[-3000:]
    assert cdr["cost"] == cdr["duration"] * RATE, cdr
    account = ro.cli_json("account", "show", "3004")
    assert account["reserved"] == 0, account
