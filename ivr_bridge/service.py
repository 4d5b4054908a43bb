"""The IVR bridge service: SIP/RTP edge + one `Dialog` per call + directory and charging.

    bridge = IvrBridge(sip_host, sip_port, directory=OcsDirectory(),
                       charging=CreditControlCharging(gy_client))
    await bridge.start()
    ...
    await bridge.stop()

`start_part(ctx)` is the `ocs serve` part factory (see `ocs.runtime`).

Each call has a `CallController` that feeds events to its dialog (with the loop's
monotonic time) and carries out the commands: SIP answer/reject/BYE, prompt playback,
timers, directory look-ups, the outgoing leg, media relay, and credit control (serialised
per call, so CCR-U / CCR-T never overtake each other).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ivr_bridge import dialog as d
from ivr_bridge.backends import (
    Charging,
    ChargingSession,
    CreditControlCharging,
    Directory,
    OcsDirectory,
    ReconnectingClient,
)
from ivr_bridge.lockout import LockoutTracker
from ivr_bridge.media.rtp import PCMA_PT, PCMU_PT, ULAW_SILENCE
from ivr_bridge.media.session import RtpLeg
from ivr_bridge.routing import NoRoute, route
from ivr_bridge.sip import sdp
from ivr_bridge.sip.message import SipParseError, parse_uri
from ivr_bridge.sip.ua import InboundCall, OutboundCall, SipUserAgent
from ivr_bridge.speech import prompt_name

if TYPE_CHECKING:
    from ocs.runtime import Part, ServeContext

log = logging.getLogger(__name__)

PROMPTS_DIR = Path(__file__).resolve().parent / "prompts"
WORD_GAP = bytes([ULAW_SILENCE]) * 400  # 50 ms between words of a sequence


@dataclass(frozen=True, slots=True)
class BridgeSettings:
    dialog: d.DialogConfig
    default_calling_address: str = ""
    default_calling_forced: bool = False


SettingsProvider = Callable[[], Awaitable[BridgeSettings]]


async def ocs_settings_provider() -> BridgeSettings:
    """Operator settings from the OCS database (read for every call: changes apply live)."""
    from ocs.settings_store import load_operator_settings

    s = await load_operator_settings()
    return BridgeSettings(
        dialog=d.DialogConfig(
            access_number=s.ivr_access_number,
            default_language=s.default_language,
            currency=s.currency,
        ),
        default_calling_address=s.default_calling_address,
        default_calling_forced=s.default_calling_forced,
    )


class PromptLibrary:
    """µ-law prompt files, loaded once and cached."""

    def __init__(self, root: Path = PROMPTS_DIR) -> None:
        self.root = root
        self._cache: dict[tuple[str, str], bytes] = {}

    def get(self, language: str, word: str) -> bytes:
        key = (language.lower(), prompt_name(word))
        if key not in self._cache:
            path = self.root / key[0] / f"{key[1]}.ul"
            try:
                self._cache[key] = path.read_bytes()
            except OSError:
                log.warning("missing prompt %s", path)
                self._cache[key] = b""
        return self._cache[key]

    def sequence(self, language: str, words: tuple[str, ...]) -> bytes:
        return WORD_GAP.join(a for a in (self.get(language, w) for w in words) if a)


class CallController:
    """Runs one call: dialog events in, commands out."""

    def __init__(
        self,
        bridge: IvrBridge,
        inbound: InboundCall,
        caller_leg: RtpLeg,
        settings: BridgeSettings,
    ) -> None:
        self.bridge = bridge
        self.inbound = inbound
        self.caller_leg = caller_leg
        self.settings = settings
        self.dialog = d.Dialog(settings.dialog, lockout=bridge.lockout)
        self.loop = asyncio.get_running_loop()
        self.timers: dict[str, asyncio.TimerHandle] = {}
        self.outbound: OutboundCall | None = None
        self.callee_leg: RtpLeg | None = None
        self.charging: ChargingSession | None = None
        self._charge_queue: asyncio.Queue[d.Command | None] = asyncio.Queue()
        self._charge_worker: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self.finished = asyncio.Event()
        self.history: list[d.Command] = []  # for tests and debugging
        inbound.on_hangup = lambda: self.feed(d.CallerHungUp())
        inbound.on_digit = self._digit
        caller_leg.on_digit = self._digit

    # ---------------------------------------------------------------- events in

    def _digit(self, digit: str) -> None:
        self.feed(d.DigitReceived(digit))

    def feed(self, event: d.Event) -> None:
        try:
            commands = self.dialog.handle(event, self.loop.time())
        except Exception:
            log.exception("dialog error on %s", event)
            commands = [d.Hangup(d.EndReason.NORMAL), d.Finished(d.EndReason.NORMAL)]
        for command in commands:
            self.history.append(command)
            try:
                self._execute(command)
            except Exception:
                log.exception("error executing %s", command)

    def _spawn(self, coro: Awaitable[d.Event | None]) -> None:
        async def run() -> None:
            try:
                event = await coro
            except Exception:
                log.exception("call %s: back-end request failed", self.inbound.call_id)
                self.inbound.hangup()  # 480 if not answered yet, else BYE
                self.feed(d.CallerHungUp())
                return
            if event is not None:
                self.feed(event)

        task = self.loop.create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ---------------------------------------------------------------- commands out

    def _execute(self, c: d.Command) -> None:
        directory = self.bridge.directory
        if isinstance(c, d.Answer):
            self.inbound.answer(self.bridge.answer_sdp(self.inbound, self.caller_leg))
            self.caller_leg.start_clock()
        elif isinstance(c, d.Reject):
            self.inbound.reject(c.status, c.reason)
        elif isinstance(c, d.Play):
            audio = self.bridge.prompts.sequence(c.language, c.prompts)
            play_id = c.play_id
            self.caller_leg.play(audio, lambda: self.feed(d.PromptFinished(play_id)))
        elif isinstance(c, d.StopPlay):
            self.caller_leg.stop_playing()
        elif isinstance(c, d.Hangup):
            self.inbound.hangup()
        elif isinstance(c, d.StartTimer):
            self._cancel_timer(c.name)
            name = c.name
            self.timers[name] = self.loop.call_later(c.seconds, lambda: self._timer_fired(name))
        elif isinstance(c, d.CancelTimer):
            self._cancel_timer(c.name)
        elif isinstance(c, d.LookupPin):
            pin = c.pin
            self._spawn(self._lookup(lambda: directory.account_by_pin(pin), d.PinLookedUp))
        elif isinstance(c, d.LookupCaller):
            number = c.number
            self._spawn(self._lookup(lambda: directory.account_by_caller(number), d.CallerLookedUp))
        elif isinstance(c, d.LookupDid):
            self._spawn(self._did(c.account_id, c.did))
        elif isinstance(c, d.CheckDestination):
            self._spawn(directory.check_destination(c.account, c.destination))
        elif isinstance(c, d.Connect):
            self.inbound.ringing()
            self._spawn(self._connect(c.destination))
        elif isinstance(c, d.Bridge):
            if self.callee_leg is not None:
                self.caller_leg.peer = self.callee_leg
                self.callee_leg.peer = self.caller_leg
        elif isinstance(c, d.ReleaseCallee):
            self._release_callee()
        elif isinstance(c, d.ChargeStart | d.ChargeUpdate | d.ChargeStop):
            if isinstance(c, d.ChargeStart):
                self.charging = self.bridge.charging.open_session(
                    c.account, c.subscriber, c.calling, c.destination, self.inbound.call_id
                )
            self._charge_queue.put_nowait(c)
            if self._charge_worker is None:
                self._charge_worker = self.loop.create_task(self._charge_loop())
        elif isinstance(c, d.Finished):
            self._finish(c.reason)

    async def _lookup(
        self, query: Callable[[], Awaitable[d.AccountInfo | None]], event: type
    ) -> d.Event:
        result: d.Event = event(await query())
        return result

    async def _did(self, account_id: int, did: str) -> d.Event:
        return d.DidLookedUp(await self.bridge.directory.did_target(account_id, did))

    def _timer_fired(self, name: str) -> None:
        self.timers.pop(name, None)
        self.feed(d.TimerExpired(name))

    def _cancel_timer(self, name: str) -> None:
        handle = self.timers.pop(name, None)
        if handle is not None:
            handle.cancel()

    async def _connect(self, destination: str) -> d.Event | None:
        try:
            target = route(
                destination,
                self.settings.default_calling_address,
                self.settings.default_calling_forced,
            )
        except NoRoute as exc:
            log.warning("call %s: %s", self.inbound.call_id, exc)
            return d.FarEndFailed(str(exc), 404)
        leg = await RtpLeg.open(self.bridge.sip_host)
        self.callee_leg = leg
        body = sdp.build(
            self.bridge.sip_host, leg.local_port, PCMU_PT, sdp.DEFAULT_DTMF_PT,
            extra_codecs=(PCMA_PT,),
        )  # fmt: skip
        started = self.loop.time()
        call = self.bridge.ua.call(
            target.uri, (target.host, target.port), self.inbound.calling or "anonymous", body
        )
        self.outbound = call

        def answered(answer: sdp.MediaDescription | None) -> None:
            if answer is None:
                call.bye()
                self.feed(d.FarEndFailed("no SDP in answer", 488))
                return
            try:
                codec = answer.codec
            except sdp.NoCommonCodec:
                call.bye()
                self.feed(d.FarEndFailed("no common codec", 488))
                return
            leg.configure((answer.address, answer.port), codec, answer.dtmf_pt)
            self.feed(d.FarEndAnswered(self.loop.time() - started))

        call.on_answer = answered
        call.on_failure = lambda status, reason: self.feed(d.FarEndFailed(reason, status))
        call.on_hangup = lambda: self.feed(d.CalleeHungUp())
        return None

    def _release_callee(self) -> None:
        self.caller_leg.peer = None
        if self.outbound is not None:
            self.outbound.on_hangup = None
            self.outbound.on_failure = None
            self.outbound.on_answer = None
            self.outbound.release()
        if self.callee_leg is not None:
            self.callee_leg.close()

    async def _charge_loop(self) -> None:
        while True:
            command = await self._charge_queue.get()
            if command is None or self.charging is None:
                return
            session = self.charging
            if isinstance(command, d.ChargeStart):
                self.feed(await session.start(command.connect_delay))
            elif isinstance(command, d.ChargeUpdate):
                self.feed(await session.update(command.used))
            elif isinstance(command, d.ChargeStop):
                await session.stop(command.used)
                return

    def _finish(self, reason: d.EndReason) -> None:
        log.info("call %s ended: %s", self.inbound.call_id, reason.value)
        for name in list(self.timers):
            self._cancel_timer(name)
        self._release_callee()
        self.bridge.calls.pop(self.inbound.call_id, None)

        async def close_later() -> None:
            if self._charge_worker is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(asyncio.shield(self._charge_worker), 15)
            await asyncio.sleep(0.5)
            self.caller_leg.close()
            self.bridge.record_stats(self.caller_leg)
            self.finished.set()

        task = self.loop.create_task(close_later())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


class IvrBridge:
    """The IVR bridge: a SIP endpoint answering the access number and DIDs."""

    def __init__(
        self,
        sip_host: str,
        sip_port: int,
        *,
        directory: Directory,
        charging: Charging,
        settings: SettingsProvider = ocs_settings_provider,
        lockout: LockoutTracker | None = None,
        prompts: PromptLibrary | None = None,
    ) -> None:
        self.sip_host = sip_host
        self.sip_port = sip_port
        self.directory = directory
        self.charging = charging
        self.settings = settings
        self.lockout = lockout or LockoutTracker(time.monotonic)
        self.prompts = prompts or PromptLibrary()
        self.calls: dict[str, CallController] = {}
        self._ua: SipUserAgent | None = None
        self.jitter_samples: list[float] = []  # |interval - 20 ms| of finished calls
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def ua(self) -> SipUserAgent:
        if self._ua is None:
            raise RuntimeError("IVR bridge not started")
        return self._ua

    async def start(self) -> None:
        self._ua = await SipUserAgent.listen(self.sip_host, self.sip_port, self._on_invite)
        self.sip_port = self.ua.port
        log.info("IVR bridge listening on %s:%d (UDP)", self.sip_host, self.sip_port)

    async def stop(self) -> None:
        for controller in list(self.calls.values()):
            controller.feed(d.CallerHungUp())
            controller.inbound.hangup()
        await asyncio.sleep(0.05)
        if self._ua is not None:
            self._ua.close()
            self._ua = None

    def _controller_for_session(self, session_id: str) -> CallController | None:
        for controller in self.calls.values():
            if controller.charging is not None and controller.charging.session_id == session_id:
                return controller
        return None

    def on_abort(self, session_id: str) -> None:
        """Diameter ASR for one of our sessions: cut the call."""
        controller = self._controller_for_session(session_id)
        if controller is not None:
            controller.feed(d.ChargingAborted())

    def on_reauth(self, session_id: str) -> None:
        """Diameter RAR: report usage and ask for a new grant now."""
        controller = self._controller_for_session(session_id)
        if controller is not None:
            controller.feed(d.ReauthRequested())

    def answer_sdp(self, inbound: InboundCall, leg: RtpLeg) -> bytes:
        offer = inbound.offer
        codec = offer.codec if offer else PCMU_PT
        dtmf = offer.dtmf_pt if offer else None
        return sdp.build(self.sip_host, leg.local_port, codec, dtmf)

    def record_stats(self, leg: RtpLeg) -> None:
        self.jitter_samples += [abs(i - 0.020) for i in leg.stats.intervals][-50_000:]

    def _on_invite(self, inbound: InboundCall) -> None:
        task = asyncio.get_running_loop().create_task(self._setup(inbound))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _setup(self, inbound: InboundCall) -> None:
        try:
            settings = await self.settings()
            leg = await RtpLeg.open(self.sip_host)
        except Exception:
            log.exception("cannot set up call %s", inbound.call_id)
            inbound.reject(503, "Service Unavailable")
            return
        offer = inbound.offer
        if offer is not None:
            leg.configure((offer.address, offer.port), offer.codec, offer.dtmf_pt)
        controller = CallController(self, inbound, leg, settings)
        self.calls[inbound.call_id] = controller
        controller.feed(d.CallOffered(_number(inbound.calling), _number(inbound.called)))


def _number(user: str) -> str:
    try:
        return parse_uri(f"sip:{user}@x").user
    except SipParseError:
        return user


# --------------------------------------------------------------------------- ocs serve


async def start_part(ctx: ServeContext) -> Part:
    """`ocs serve` part: the bridge on settings.sip_host:sip_port, charging over Diameter."""
    from ocs.diameter.client import GyClient
    from ocs.runtime import SimplePart

    s = ctx.settings
    gy = GyClient(s.diameter_host, s.diameter_port, s.ivr_origin_host, s.diameter_realm)
    await _connect_with_retry(gy)
    charging = CreditControlCharging(ReconnectingClient(gy), gy.origin_host, gy.realm)
    bridge = IvrBridge(s.sip_host, s.sip_port, directory=OcsDirectory(), charging=charging)
    gy.on_asr(bridge.on_abort)
    gy.on_rar(bridge.on_reauth)
    await bridge.start()

    async def stop() -> None:
        await bridge.stop()
        with contextlib.suppress(Exception):
            await gy.close()

    return SimplePart("ivr", stop)


async def _connect_with_retry(gy: Any, attempts: int = 20, delay: float = 0.25) -> None:
    """The Diameter server part may still be starting; try for a few seconds."""
    for attempt in range(attempts):
        try:
            await gy.connect()
            return
        except (OSError, TimeoutError, Exception) as exc:
            if attempt == attempts - 1:
                raise
            log.debug("Gy connect failed (%s), retrying", exc)
            await asyncio.sleep(delay)
