"""Publish every event-bus event to MQTT (Mosquitto) for monitoring and integrations.

`start_mqtt(ctx)` subscribes to the bus and runs a publisher task. It connects to
`settings.mqtt_url` (``mqtt://[user:pass@]host[:port][/topic-prefix][?qos=0|1&client_id=..]``),
reconnects with exponential backoff (0.5 s → 30 s), and never blocks or fails charging: the
bus subscription is a bounded queue that drops its oldest events while the broker is away
(`dropped` counts them). Topics and payloads are documented in docs/EVENTS.md:

    <prefix>/<kind with "." replaced by "/">/<account>     e.g. ocs/session/start/1001
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import aiomqtt

from ocs.events import Event, Subscription
from ocs.runtime import Part, ServeContext, SimplePart

log = logging.getLogger(__name__)

QUEUE_SIZE = 10000
_UNSAFE = re.compile(r"[+#/\x00]")


class MqttConfigError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class MqttTarget:
    host: str
    port: int = 1883
    username: str | None = None
    password: str | None = None
    prefix: str = "ocs"
    qos: int = 0
    client_id: str = ""
    tls: bool = False


def parse_url(url: str) -> MqttTarget:
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts", "tcp"):
        raise MqttConfigError(f"MQTT URL must start with mqtt:// or mqtts://, got {url!r}")
    if not parts.hostname:
        raise MqttConfigError(f"MQTT URL has no host: {url!r}")
    query = parse_qs(parts.query)
    try:
        qos = int(query.get("qos", ["0"])[0])
    except ValueError:
        raise MqttConfigError("qos must be 0, 1 or 2") from None
    if qos not in (0, 1, 2):
        raise MqttConfigError("qos must be 0, 1 or 2")
    prefix = parts.path.strip("/") or "ocs"
    tls = parts.scheme == "mqtts"
    return MqttTarget(
        host=parts.hostname,
        port=parts.port or (8883 if tls else 1883),
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        prefix=prefix,
        qos=qos,
        client_id=query.get("client_id", [""])[0],
        tls=tls,
    )


def topic_for(prefix: str, event: Event) -> str:
    account = event.data.get("account")
    segment = _UNSAFE.sub("_", str(account)) if account not in (None, "") else "_"
    return f"{prefix}/{event.kind.replace('.', '/')}/{segment}"


def payload_for(event: Event) -> bytes:
    return json.dumps(event.as_json(), default=str, separators=(",", ":")).encode()


class MqttPublisher:
    name = "mqtt"

    def __init__(self, target: MqttTarget, sub: Subscription) -> None:
        self.target = target
        self.sub = sub
        self.published = 0
        self.connected = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._pending: Event | None = None  # taken from the queue, not yet sent

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="mqtt-publisher")

    async def _run(self) -> None:
        delay = 0.5
        while True:
            try:
                async with aiomqtt.Client(
                    hostname=self.target.host,
                    port=self.target.port,
                    username=self.target.username,
                    password=self.target.password,
                    identifier=self.target.client_id or None,
                    tls_params=aiomqtt.TLSParameters() if self.target.tls else None,
                    timeout=10,
                ) as client:
                    log.info("MQTT connected to %s:%d", self.target.host, self.target.port)
                    self.connected.set()
                    delay = 0.5
                    await self._pump(client)
            except aiomqtt.MqttError as exc:
                self.connected.clear()
                log.warning("MQTT broker unavailable (%s); retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)

    async def _pump(self, client: aiomqtt.Client) -> None:
        while True:
            event = self._pending or await self.sub.get()
            self._pending = event
            await client.publish(
                topic_for(self.target.prefix, event), payload_for(event), qos=self.target.qos
            )
            self._pending = None
            self.published += 1

    async def stop(self) -> None:
        self.sub.close()
        if self._task is not None:
            # Give queued events a moment to go out while connected, then stop.
            if self.connected.is_set():
                for _ in range(20):
                    if self.sub.queue.empty() and self._pending is None:
                        break
                    await asyncio.sleep(0.05)
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    @property
    def dropped(self) -> int:
        return self.sub.dropped


async def start_mqtt(ctx: ServeContext) -> Part:
    """Start publishing `ctx.bus` to `settings.mqtt_url` (a no-op part when it is unset)."""
    url = ctx.settings.mqtt_url
    if not url:

        async def nothing() -> None:
            return None

        return SimplePart("mqtt", nothing)
    target = parse_url(url)
    publisher = MqttPublisher(target, ctx.bus.subscribe(maxsize=QUEUE_SIZE))
    publisher.start()
    return publisher


def describe(target: MqttTarget) -> dict[str, Any]:
    return {"host": target.host, "port": target.port, "prefix": target.prefix, "qos": target.qos}
