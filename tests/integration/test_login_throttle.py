"""Login hardening (issue 13, items 9 and 11): lockout per name, per address and globally,
429 + Retry-After, kept in the database (survives a restart, binds other processes), and
scrypt off the event loop (the server keeps answering during a login flood)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator

import httpx
import pytest

from ocs import db as ocs_db
from ocs import login_throttle, operators
from ocs.config import Settings
from ocs.events import EventBus
from ocs.login_throttle import Limit, LoginThrottle
from ocs.models import LoginThrottle as ThrottleRow
from ocs.models import Operator, OperatorRole
from ocs.runtime import ServeContext
from tests.integration.web_support import Browser, RecordingControl, asgi_client

PASSWORD = "the right password"
NOW = 1_800_000_100.0  # 100 s into a 900 s window (1_800_000_000 is a multiple of 900)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The throttle's clock, driven by the test (windows are wall-clock based)."""
    now = [NOW]
    monkeypatch.setattr(login_throttle.default, "clock", lambda: now[0])
    monkeypatch.setattr(login_throttle, "PURGE_PROBABILITY", 0.0)
    return now


@pytest.fixture
async def ctx(db: Settings, clock: list[float]) -> ServeContext:
    await operators.create("boss", PASSWORD, "admin")
    await operators.create("olga", PASSWORD, "operator")
    return ServeContext(settings=db, bus=EventBus(), sessions=RecordingControl())


def browser_at(ctx: ServeContext, address: str) -> httpx.AsyncClient:
    return asgi_client(ctx, client=(address, 40000))


async def login(client: httpx.AsyncClient, name: str, password: str) -> httpx.Response:
    b = Browser(client)
    return await b.login(name, password)


@pytest.fixture
async def web(ctx: ServeContext) -> AsyncIterator[httpx.AsyncClient]:
    async with browser_at(ctx, "10.0.0.1") as c:
        yield c


async def test_five_failures_lock_the_name_with_429_and_retry_after(
    web: httpx.AsyncClient, ctx: ServeContext, clock: list[float]
) -> None:
    for _ in range(5):
        assert (await login(web, "boss", "wrong password")).status_code == 401
    r = await login(web, "boss", PASSWORD)  # even the right password waits
    assert r.status_code == 429
    assert r.headers["retry-after"] == "800"  # the 900 s window ends 800 s from now
    assert "Too many login attempts" in r.text and "800 seconds" in r.text
    async with browser_at(ctx, "10.0.0.2") as elsewhere:  # the name, not the address
        assert (await login(elsewhere, "boss", PASSWORD)).status_code == 429
        assert (await login(elsewhere, "olga", PASSWORD)).status_code == 303
    clock[0] += 800  # the window is over
    assert (await login(web, "boss", PASSWORD)).status_code == 303


async def test_a_good_login_gives_the_failures_back(web: httpx.AsyncClient) -> None:
    for _ in range(4):
        assert (await login(web, "boss", "wrong password")).status_code == 401
    assert (await login(web, "boss", PASSWORD)).status_code == 303
    for _ in range(5):
        assert (await login(web, "boss", "wrong password")).status_code == 401
    assert (await login(web, "boss", "wrong password")).status_code == 429


async def test_one_address_guessing_many_names_is_stopped(ctx: ServeContext) -> None:
    async with browser_at(ctx, "10.0.0.66") as attacker, browser_at(ctx, "10.0.0.7") as user:
        for i in range(20):
            assert (await login(attacker, f"name{i}", "guess")).status_code == 401
        r = await login(attacker, "olga", PASSWORD)
        assert r.status_code == 429 and int(r.headers["retry-after"]) > 0
        assert (await login(user, "olga", PASSWORD)).status_code == 303


async def test_global_cap_bounds_a_distributed_flood(ctx: ServeContext,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(login_throttle.default, "limits",
                        (Limit("addr", 100, 900), Limit("user", 100, 900),
                         Limit("global", 6, 60)))
    for i in range(6):
        async with browser_at(ctx, f"10.1.0.{i}") as bot:
            assert (await login(bot, f"name{i}", "guess")).status_code == 401
    async with browser_at(ctx, "10.1.1.1") as real:
        r = await login(real, "olga", PASSWORD)
        assert r.status_code == 429
        assert r.headers["retry-after"] == "20"  # NOW is 40 s into a 60 s window


async def test_limits_survive_a_restart(db: Settings, ctx: ServeContext) -> None:
    async with browser_at(ctx, "10.0.0.1") as before:
        for _ in range(5):
            await login(before, "boss", "wrong password")
    await ocs_db.close_db()
    await ocs_db.init_db(db)  # a new process would start like this
    async with browser_at(ServeContext(settings=db, bus=EventBus()), "10.0.0.1") as after:
        assert (await login(after, "boss", PASSWORD)).status_code == 429


async def test_limits_bind_another_process(db: Settings, ctx: ServeContext) -> None:
    """Another OCS process on the same database makes the failed attempts."""
    script = textwrap.dedent(f"""
        import asyncio, httpx, re
        from ocs import db, login_throttle
        from ocs.config import load_settings
        from ocs.events import EventBus
        from ocs.runtime import ServeContext
        from api.app import create_app

        async def main():
            settings = load_settings()
            await db.init_db(settings)
            login_throttle.default.clock = lambda: {NOW}
            app = create_app(ServeContext(settings=settings, bus=EventBus()))
            transport = httpx.ASGITransport(app=app, client=("10.9.9.9", 1))
            async with httpx.AsyncClient(transport=transport, base_url="http://x") as c:
                page = await c.get("/login")
                token = re.search(r'name="_csrf_token" value="([^"]+)"', page.text).group(1)
                for _ in range(5):
                    r = await c.post("/login", data={{"_csrf_token": token,
                                     "username": "boss", "password": "wrong password"}})
                    assert r.status_code == 401, r.status_code
            await db.close_db()

        asyncio.run(main())
    """)
    env = {**os.environ, "OCS_DATA_DIR": str(db.data_dir), "OCS_DATABASE_URL": db.database_url}
    done = await asyncio.to_thread(subprocess.run, [sys.executable, "-c", script], env=env,
                                   capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    async with browser_at(ctx, "10.0.0.1") as here:
        assert (await login(here, "boss", PASSWORD)).status_code == 429


async def test_expired_counters_are_purged(ctx: ServeContext, clock: list[float]) -> None:
    throttle = LoginThrottle(clock=lambda: clock[0])
    assert (await throttle.acquire("boss", "10.0.0.1")).allowed
    assert await ThrottleRow.all().count() == 3
    await login_throttle.purge(clock[0] + 60)  # the 60 s global window has ended
    assert await ThrottleRow.all().count() == 2
    await login_throttle.purge(clock[0] + 900)
    assert await ThrottleRow.all().count() == 0


def test_window_arithmetic() -> None:
    limit = Limit("user", 5, 900)
    assert login_throttle.window_start(NOW, 900) == NOW - 100
    assert login_throttle.retry_after(limit, NOW) == 800
    assert login_throttle.retry_after(limit, NOW - 100 + 899.5) == 1
    assert login_throttle.counter_key(limit, "x" * 500, NOW).startswith("user:" + "x" * 120 + "@")
    assert login_throttle.subjects(" Boss ", "")["user"] == "boss"


# --- item 9: scrypt never blocks the event loop ----------------------------------------------


def slow_record(password: str) -> dict[str, object]:
    """A valid scrypt record with p=32: one check takes ~32 times the normal cost, long
    enough that the server answering during it cannot be an accident."""
    salt = os.urandom(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=2**14, r=8, p=32,
                            maxmem=64 * 1024 * 1024, dklen=32)
    return {"algorithm": "scrypt", "n": 2**14, "r": 8, "p": 32,
            "salt": base64.b64encode(salt).decode(), "hash": base64.b64encode(digest).decode()}


async def test_a_login_flood_never_blocks_the_event_loop(ctx: ServeContext) -> None:
    """Four concurrent logins with a slow (p=32) hash while a heartbeat polls the loop.

    On the loop, each check would stall everything for a whole hash (the heartbeat's largest
    gap >= one hash time); in the worker pool the loop keeps turning. Compared with the hash
    time measured in this run (a ratio, so a slow machine does not matter)."""
    record = slow_record("x" * 9)
    await Operator.create(name="slow", role=OperatorRole.READONLY, password=record)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await asyncio.to_thread(operators.admin_auth.verify_hash, record, "nope")
    hash_time = loop.time() - started

    gaps: list[float] = []
    stop = asyncio.Event()

    async def heartbeat() -> None:
        last = loop.time()
        while not stop.is_set():
            await asyncio.sleep(0)
            now = loop.time()
            gaps.append(now - last)
            last = now

    async with browser_at(ctx, "10.0.0.1") as c:
        browsers = [Browser(c) for _ in range(4)]
        for b in browsers:
            await b.get("/login")
        beat = asyncio.create_task(heartbeat())
        answers = await asyncio.gather(*(b.post("/login", {"username": "slow",
                                                           "password": "nope"})
                                         for b in browsers))
        stop.set()
        await beat
    assert [r.status_code for r in answers] == [401] * 4
    assert max(gaps) < hash_time / 4, (max(gaps), hash_time)
