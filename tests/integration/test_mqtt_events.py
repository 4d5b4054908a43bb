"""Bus events reach the real Mosquitto broker on the documented topics (docs/EVENTS.md)."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from ocs.config import Settings
from ocs.events import Event, EventBus
from ocs.mqtt import (
    QUEUE_SIZE,
    MqttPublisher,
    parse_url,
    payload_for,
    start_mqtt,
    topic_for,
)
from ocs.runtime import ServeContext

pytestmark = pytest.mark.mqtt


def test_parse_url_and_topics() -> None:
    t = parse_url("mqtt://user:p%40ss@broker:1884/tel/ocs?qos=1&client_id=ocs-1")
    assert (t.host, t.port, t.username, t.password) == ("broker", 1884, "user", "p@ss")
    assert (t.prefix, t.qos, t.client_id) == ("tel/ocs", 1, "ocs-1")
    assert parse_url("mqtt://localhost").prefix == "ocs"
    with pytest.raises(ValueError):
        parse_url("http://x")
    with pytest.raises(ValueError):
        parse_url("mqtt://x?qos=5")
    e = Event("session.start", {"account": "1001", "session_id": "a"})
    assert topic_for("ocs", e) == "ocs/session/start/1001"
    assert topic_for("ocs", Event("credit.low", {"account": "a/b+#"})) == "ocs/credit/low/a_b__"
    assert topic_for("ocs", Event("session.end", {})) == "ocs/session/end/_"
    body = json.loads(payload_for(e))
    assert body["kind"] == "session.start" and body["account"] == "1001" and "at" in body


def _settings(tmp_path: Path, url: str | None) -> Settings:
    return Settings(data_dir=tmp_path, database_url=f"sqlite://{tmp_path}/x.sqlite3", mqtt_url=url)


async def test_no_url_is_a_no_op(tmp_path: Path) -> None:
    bus = EventBus()
    part = await start_mqtt(ServeContext(settings=_settings(tmp_path, None), bus=bus))
    assert part.name == "mqtt" and bus.subscribers == 0
    await part.stop()


async def test_events_are_published(tmp_path: Path, mqtt_broker: tuple[str, int]) -> None:
    host, port = mqtt_broker
    prefix = f"ocs-test-{uuid.uuid4().hex}"  # unique per run: runs may share the broker
    bus = EventBus()
    url = f"mqtt://{host}:{port}/{prefix}?qos=1"
    ctx = ServeContext(settings=_settings(tmp_path, url), bus=bus)
    received: list[tuple[str, dict[str, Any]]] = []
    async with aiomqtt.Client(host, port) as sub:
        await sub.subscribe(f"{prefix}/#", qos=1)
        part = await start_mqtt(ctx)
        assert isinstance(part, MqttPublisher)
        try:
            await asyncio.wait_for(part.connected.wait(), 5)
            bus.publish("session.start", session_id="s1", account="1001", calling="5173",
                        called="3000", rate=200)
            bus.publish("credit.change", account="1001", amount=-600, kind="CALL",
                        balance=203200, actor="ocs")
            bus.publish("session.end", session_id="s1", account="1001", duration=3, cost=600,
                        reason="normal")

            async def collect() -> None:
                async for message in sub.messages:
                    received.append((str(message.topic), json.loads(message.payload)))
                    if len(received) == 3:
                        return

            await asyncio.wait_for(collect(), 5)
        finally:
            await part.stop()
    topics = [t for t, _ in received]
    assert topics == [f"{prefix}/session/start/1001", f"{prefix}/credit/change/1001",
                      f"{prefix}/session/end/1001"]
    start, _, end = (p for _, p in received)
    assert start["session_id"] == "s1" and start["rate"] == 200 and start["kind"] == "session.start"
    assert end["cost"] == 600 and end["reason"] == "normal"
    assert bus.subscribers == 0


async def broker_failure_logged(caplog: pytest.LogCaptureFixture, timeout: float = 10) -> None:
    async with asyncio.timeout(timeout):
        while not any("MQTT broker unavailable" in r.getMessage() for r in caplog.records):
            await asyncio.sleep(0.02)


async def test_broker_outage_never_blocks_the_bus(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Nothing listens on the port: publishing never waits for the broker (it is a plain
    call, and the publisher's queue is bounded: it drops the oldest)."""
    caplog.set_level(logging.WARNING, logger="ocs.mqtt")
    bus = EventBus()
    ctx = ServeContext(settings=_settings(tmp_path, "mqtt://127.0.0.1:1/ocs"), bus=bus)
    part = await start_mqtt(ctx)
    assert isinstance(part, MqttPublisher)
    try:
        for i in range(20000):  # no await in between: the publisher cannot even run
            bus.publish("session.update", session_id="s", account="1", used=i)
        assert part.sub.queue.qsize() == QUEUE_SIZE
        assert part.dropped == 20000 - QUEUE_SIZE
        await broker_failure_logged(caplog)
        assert not part.connected.is_set()
    finally:
        await asyncio.wait_for(part.stop(), 5)


async def test_reconnects_after_outage(
        tmp_path: Path, mqtt_broker: tuple[str, int], caplog: pytest.LogCaptureFixture) -> None:
    """Events published while the publisher cannot connect are delivered once it can."""
    host, port = mqtt_broker
    prefix = f"ocs-retry-{uuid.uuid4().hex}"
    caplog.set_level(logging.WARNING, logger="ocs.mqtt")
    bus = EventBus()
    target = parse_url(f"mqtt://{host}:1/{prefix}")  # a dead port first
    part = MqttPublisher(target, bus.subscribe(maxsize=100))
    part.start()
    try:
        bus.publish("credit.low", account="1001", available=900, threshold=10000)
        await broker_failure_logged(caplog)
        async with aiomqtt.Client(host, port) as sub:
            await sub.subscribe(f"{prefix}/#", qos=1)
            part.target = parse_url(f"mqtt://{host}:{port}/{prefix}")  # broker "comes back"
            message = await asyncio.wait_for(anext(aiter(sub.messages)), 10)
            assert str(message.topic) == f"{prefix}/credit/low/1001"
    finally:
        await part.stop()
