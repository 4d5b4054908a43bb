"""A real call through the OCS produces session start/end events on the real Mosquitto."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import uuid
from typing import Any

import aiomqtt
import pytest

from ocs import ledger
from ocs.charging.engine import ChargingEngine
from ocs.demo import load_demo
from ocs.diameter import DiameterServer, GyClient
from ocs.events import EventBus
from ocs.mqtt import start_mqtt
from ocs.runtime import ServeContext

pytestmark = pytest.mark.mqtt


async def test_call_events_reach_mqtt(db, mqtt_broker: tuple[str, int]) -> None:
    host, port = mqtt_broker
    prefix = f"ocs-call-{uuid.uuid4().hex}"  # unique per run: runs may share the broker
    settings = dataclasses.replace(db, mqtt_url=f"mqtt://{host}:{port}/{prefix}?qos=1")
    await load_demo()
    bus = EventBus()
    ctx = ServeContext(settings=settings, bus=bus)
    engine = ChargingEngine(ledger.store(), bus, tcc_interval=3600)
    await engine.start()
    server = DiameterServer(engine, host="127.0.0.1", port=0, origin_host="ocs.test", realm="test")
    await server.start()
    received: list[tuple[str, dict[str, Any]]] = []
    try:
        async with aiomqtt.Client(host, port) as sub:
            await sub.subscribe(f"{prefix}/session/#", qos=1)
            part = await start_mqtt(ctx)
            try:
                await asyncio.wait_for(part.connected.wait(), 5)  # type: ignore[attr-defined]
                async with GyClient("127.0.0.1", server.bound_port, "pcscf.test", "test") as gy:
                    sid = gy.new_session_id()
                    await gy.initial(sid, "+5173", "tel:0141587070", 30)
                    await gy.update(sid, 30, 30)
                    await gy.terminate(sid, 5)

                async def collect() -> None:
                    async for message in sub.messages:
                        received.append((str(message.topic), json.loads(message.payload)))
                        if received[-1][1]["kind"] == "session.end":
                            return

                await asyncio.wait_for(collect(), 5)
            finally:
                await part.stop()
    finally:
        await server.stop()
        await engine.stop()
    topics = [t for t, _ in received]
    assert topics == [
        f"{prefix}/session/start/1001",
        f"{prefix}/session/update/1001",
        f"{prefix}/session/end/1001",
    ]
    start, end = received[0][1], received[-1][1]
    assert start["session_id"] == sid and start["calling"] == "5173" and start["rate"] == 200
    assert end["duration"] == 35 and end["cost"] == 7000 and end["reason"] == "NORMAL"
