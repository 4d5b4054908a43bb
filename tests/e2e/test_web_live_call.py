"""Supervision against the real product: `ocs serve` in a subprocess, real Diameter calls.

Nothing is faked here: the database is prepared with the CLI (`migrate`, `demo`,
`admin set-password`), the whole server runs as `ocs serve --only ocs --only web --only
control`, calls are placed over Diameter by `ocs client call --realtime`, and headless
Chromium watches the Supervision page. It checks that a live call appears and disappears
without a reload, that the account is charged exactly, and that the Cut button aborts a call
(ASR): the client ends well before its planned length and a short CDR is written.
Screenshots: test-artifacts/screenshots/10_supervision_live_call.png, 11_supervision_after_cut.png.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ocs.config import Settings
from tests.conftest import port_open
from tests.e2e.web_support import CHROMIUM_ARGS, require_chromium, screenshot_path

pytestmark = pytest.mark.browser

PASSWORD = "operator secret"
CALLER = "5173"  # a caller ID of demo account 1001
ACCOUNT = "1001"
DIALLED = "0141587070"  # DEFAULT tariff of the demo data: 200 units/second
RATE = 200
DEMO_CREDIT = 250_000
STARTUP_TIMEOUT = 30.0
UI_TIMEOUT_MS = 15_000
OCS = (sys.executable, "-m", "ocs.cli")


@dataclass
class Product:
    env: dict[str, str]
    base: str
    diameter_port: int
    logs: Path

    def cli(self, *args: str, stdin: str | None = None, timeout: float = 30.0) -> str:
        """Run `python -m ocs.cli ARGS` against this product; fail on a non-zero exit."""
        done = subprocess.run(
            [*OCS, *args],
            env=self.env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        assert done.returncode == 0, (
            f"ocs {' '.join(args)} exited {done.returncode}\n"
            f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
        )
        return done.stdout

    def cli_json(self, *args: str) -> Any:
        return json.loads(self.cli(*args, "--json"))

    def call(self, name: str, duration: int) -> Call:
        """Start `ocs client call --realtime` in the background."""
        out = self.logs / f"{name}.log"
        handle = out.open("w")
        proc = subprocess.Popen(
            [
                *OCS,
                *["client", "call", "--from", CALLER, "--to", DIALLED, "--realtime"],
                *["--duration", str(duration), "--update-every", "4"],
                *["--host", "127.0.0.1", "--port", str(self.diameter_port)],
            ],
            env=self.env,
            stdout=handle,
            stderr=subprocess.STDOUT,
            text=True,
        )
        handle.close()
        return Call(proc, out, time.monotonic())


@dataclass
class Call:
    proc: subprocess.Popen[str]
    log: Path
    started: float

    def output(self) -> str:
        return self.log.read_text()

    def wait(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(
                f"`ocs client call` still running {time.monotonic() - self.started:.1f} s after"
                f" it started; its output so far:\n{self.output()}"
            )

    def stop(self) -> None:
        _terminate(self.proc)


def _terminate(proc: subprocess.Popen[Any], grace: float = 10.0) -> None:
    """SIGTERM, then SIGKILL if it does not exit within `grace` seconds."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=grace)


def _product_env(settings: Settings) -> dict[str, str]:
    """Every server binds port 0; the ports are read back from `ocs serve`'s log."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OCS_")}
    env.update(
        {
            "OCS_DATA_DIR": str(settings.data_dir),
            "OCS_DATABASE_URL": settings.database_url,
            "OCS_WEB_HOST": "127.0.0.1",
            "OCS_WEB_PORT": "0",
            "OCS_DIAMETER_HOST": "127.0.0.1",
            "OCS_DIAMETER_PORT": "0",
            "OCS_SIP_HOST": "127.0.0.1",
            "OCS_SIP_PORT": "0",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def _bound_ports(log: str) -> tuple[int, int] | None:
    """(web, Diameter) ports as `ocs serve` logs them once it listens."""
    web = re.search(r"web UI on http://127\.0\.0\.1:(\d+)/", log)
    diameter = re.search(r"Diameter server on 127\.0\.0\.1:(\d+)", log)
    if web is None or diameter is None:
        return None
    return int(web[1]), int(diameter[1])


@pytest.fixture
def product(settings: Settings, tmp_path: Path) -> Iterator[Product]:
    """The real product, prepared with its CLI and served by `ocs serve` in a subprocess."""
    require_chromium()  # skip (or fail under CI) before paying for the start-up
    logs = tmp_path / "logs"
    logs.mkdir()
    prod = Product(env=_product_env(settings), base="", diameter_port=0, logs=logs)
    prod.cli("migrate")
    prod.cli("demo")
    prod.cli("admin", "set-password", "--password-stdin", stdin=PASSWORD + "\n")

    serve_log = logs / "serve.log"
    with serve_log.open("w") as handle:
        serve = subprocess.Popen(
            [*OCS, "serve", "--only", "ocs", "--only", "web", "--only", "control"],
            env=prod.env,
            stdout=handle,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while not (ports := _bound_ports(serve_log.read_text())):
            if serve.poll() is not None:
                pytest.fail(f"`ocs serve` exited {serve.returncode}:\n{serve_log.read_text()}")
            if time.monotonic() > deadline:
                pytest.fail(
                    f"`ocs serve` not listening after {STARTUP_TIMEOUT} s:\n{serve_log.read_text()}"
                )
            time.sleep(0.1)
        web_port, prod.diameter_port = ports
        prod.base = f"http://127.0.0.1:{web_port}"
        assert port_open("127.0.0.1", web_port) and port_open("127.0.0.1", prod.diameter_port)
        yield prod
    finally:
        _terminate(serve)
        if serve.returncode not in (0, -signal.SIGTERM):
            print(f"ocs serve exited {serve.returncode}:\n{serve_log.read_text()}")


@pytest.fixture
def page(product: Product) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    executable = require_chromium()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1360, "height": 900})
            pg = context.new_page()
            pg.set_default_timeout(UI_TIMEOUT_MS)
            yield pg
        finally:
            browser.close()


def _login(pg: Any, base: str) -> None:
    pg.goto(f"{base}/supervision")
    assert "/login" in pg.url
    assert pg.locator("input[name=confirm]").count() == 0  # the CLI set the password
    pg.fill("input[name=password]", PASSWORD)
    pg.click("button[type=submit]")
    pg.wait_for_load_state()
    if not pg.url.startswith(f"{base}/supervision"):
        pg.goto(f"{base}/supervision")
    assert pg.url.startswith(f"{base}/supervision"), pg.url


def test_live_call_and_cut_against_the_real_server(product: Product, page: Any) -> None:
    from playwright.sync_api import expect

    pg = page
    _login(pg, product.base)

    # Supervision, live over SSE, empty for now
    live = pg.locator("#live-rows tr[data-session]")
    expect(pg.locator("#live-state")).to_have_attribute("data-state", "live")
    expect(pg.locator("#live-rows")).to_contain_text("No call in progress")
    assert pg.evaluate("window.__marker = 'no reload'") == "no reload"

    # 1. an 8-second call: the row appears by itself, then goes away by itself
    first = product.call("call-8s", duration=8)
    try:
        expect(live).to_have_count(1)
        row = live.first
        cells = row.locator("td")
        expect(cells.nth(0)).to_have_text(CALLER)
        expect(cells.nth(1)).to_have_text("Connected")
        expect(cells.nth(2)).to_have_text(ACCOUNT)
        expect(cells.nth(5)).to_have_text(DIALLED)
        expect(cells.nth(6)).to_have_text(str(RATE))
        expect(row.get_by_role("button", name=f"Cut call from {CALLER}")).to_be_visible()
        expect(row.locator("[data-f=duration]")).to_have_text(re.compile(r"^[2-9]$"))  # ticks
        pg.screenshot(path=screenshot_path("10_supervision_live_call"), full_page=True)
        expect(live).to_have_count(0, timeout=20_000)
        expect(pg.locator("#live-rows")).to_contain_text("No call in progress")
        code = first.wait(timeout=15)
    finally:
        first.stop()
    assert code == 0, first.output()
    assert "call ended after 8 s" in first.output(), first.output()
    assert pg.evaluate("window.__marker") == "no reload"

    account = product.cli_json("account", "show", ACCOUNT)
    assert account["balance"] == DEMO_CREDIT - 8 * RATE, account
    assert account["reserved"] == 0, account

    # 2. a 60-second call, cut from the page: ASR, the client hangs up, a short CDR
    second = product.call("call-60s-cut", duration=60)
    dialogs: list[str] = []

    def accept(dialog: Any) -> None:
        dialogs.append(dialog.message)
        dialog.accept()

    pg.on("dialog", accept)
    try:
        expect(live).to_have_count(1)
        row = live.first
        expect(row.locator("td").nth(0)).to_have_text(CALLER)
        session_id = row.get_attribute("data-session")
        assert session_id
        row.get_by_role("button", name=f"Cut call from {CALLER}").click()
        expect(pg.locator("#notice")).to_contain_text("Result-Code 2001")
        assert dialogs == [f"Cut the call from {CALLER} to {DIALLED}?"], dialogs
        code = second.wait(timeout=20)
        expect(live).to_have_count(0, timeout=20_000)
        expect(pg.locator("#live-rows")).to_contain_text("No call in progress")
        expect(pg.locator("#notice")).to_contain_text("Result-Code 2001")
        pg.screenshot(path=screenshot_path("11_supervision_after_cut"), full_page=True)
    finally:
        second.stop()
    assert code == 3, f"expected exit 3 (cut by the OCS), got {code}:\n{second.output()}"
    assert "cut by the OCS" in second.output(), second.output()
    assert pg.evaluate("window.__marker") == "no reload"

    cdrs = {c["session_id"]: c for c in product.cli_json("cdr", "list")["items"]}
    assert session_id in cdrs, cdrs
    cut = cdrs[session_id]
    assert 0 <= cut["duration"] < 60, cut  # cut before the 60 s it meant to talk
    assert cut["end_reason"] == "ADMINISTRATIVE", cut  # by the operator's ASR
    assert (cut["user"], cut["calling"], cut["dialed"]) == (ACCOUNT, CALLER, DIALLED), cut
    assert cut["cost"] == cut["duration"] * RATE, cut
    account = product.cli_json("account", "show", ACCOUNT)
    assert account["reserved"] == 0, account
    assert account["balance"] == DEMO_CREDIT - 8 * RATE - cut["cost"], account
