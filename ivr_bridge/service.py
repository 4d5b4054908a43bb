"""The IVR bridge service: SIP/RTP edge + one `Dialog` per call + directory and charging.

    bridge = IvrBridge(sip_host, sip_port, directory=OcsDirectory(),
                       charging=CreditControlCharging(gy_client))
    await bridge.start()
    ...
    await bridge.stop()

`start_part(ctx)` is the `ocs serve` part factory (see `ocs.runtime`).

Each call has a `CallController` that feeds events to its dialog (with the loop's
monotonic time) and carries out the commands: SIP answer/reject/BYE, prompt playback,
timers, directory and lockout look-ups, voucher redemptions, the outgoing leg (progress,
early media, DTMF relay), media relay, and credit control (serialised per call, so CCR-U /
CCR-T never overtake each other, and the credit read after a call comes after its CCR-T).
Every dialog step is written to the service log (`servicelog`, `servicelog_store`).

New INVITEs pass `Admission` (rate and concurrency) before anything is allocated.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ivr_bridge import dialog as d
from ivr_bridge.backends import (
    Charging,
    ChargingSession,
    CreditControlCharging,
    DbLockout,
    Directory,
    Lockout,
    OcsDirectory,
    OcsRecharge,
    Recharge,
    ReconnectingClient,
)
from ivr_bridge.media.rtp import PCMA_PT, PCMU_PT, ULAW_SILENCE
from ivr_bridge.media.session import RtpLeg
from ivr_bridge.routing import NoRoute, route
from ivr_bridge.servicelog import step_line
from ivr_bridge.servicelog_store import CallLog, DbLogSink, LogSink
from ivr_bridge.sip import sdp
from ivr_bridge.sip.admission import Admission
from ivr_bridge.sip.message import SipParseError, parse_uri
from ivr_bridge.sip.ua import InboundCall, OutboundCall, SipUserAgent
from ivr_bridge.speech import LANGUAGES, prompt_name

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
    service_log: bool = True


SettingsProvider = Callable[[], Awaitable[BridgeSettings]]


async def ocs_settings_provider() -> BridgeSettings:
    """Operator settings from the OCS database (read for every call: changes apply live)."""
    from ocs.settings_store import load_operator_settings

    s = await load_operator_settings()
    return BridgeSettings(
        dialog=d.DialogConfig(
            access_number=s.ivr_access_number,
            default_language=s.default_language,
            language_menu=s.ivr_language_menu,
            currency=s.currency,
            no_answer_timeout=float(s.ivr_no_answer_timeout),
            one_step_access=s.ivr_one_step_access,
            caller_pin_required=s.ivr_caller_pin_required,
            warning_seconds=s.ivr_warning_seconds,
            warning_tone=s.ivr_warning_mode in ("tone", "both"),
            warning_prompt=s.ivr_warning_mode in ("prompt", "both"),
            another_call=s.ivr_another_call,
        ),
        default_calling_address=s.default_calling_address,
        default_calling_forced=s.default_calling_forced,
        service_log=s.service_log,
    )


class PromptLibrary:
    """µ-law prompt files, loaded once and cached. ``tone_*`` names come from ``tones/``;
    a ``"en:name"`` word is spoken in that language whatever the call's language."""

    def __init__(self, root: Path = PROMPTS_DIR) -> None:
        self.root = root
        self._cache: dict[tuple[str, str], bytes] = {}

    def get(self, language: str, word: str) -> bytes:
        forced, sep, rest = word.partition(":")
        if sep and forced.upper() in LANGUAGES:
            language, word = forced, rest
        folder = "tones" if word.startswith("tone_") else language.lower()
        key = (folder, prompt_name(word))
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
        self.dialog = d.Dialog(settings.dialog)
        self.loop = asyncio.get_running_loop()
        self.timers: dict[str, asyncio.TimerHandle] = {}
        self.outbound: OutboundCall | None = None
        self.callee_leg: RtpLeg | None = None
        self.charging: ChargingSession | None = None
        # Credit control and what must follow it, in order: (command, its session).
        self._charge_queue: asyncio.Queue[tuple[d.Command, ChargingSession | None]] = (
            asyncio.Queue()
        )
        self._charge_worker: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self.finished = asyncio.Event()
        self.history: list[d.Command] = []  # for tests and debugging
        self.service_log = CallLog(inbound.call_id, enabled=settings.service_log)
        self._steps = 0
        inbound.on_hangup = self._caller_bye
        inbound.on_digit = self._digit
        caller_leg.on_digit = self._digit

    # ---------------------------------------------------------------- events in

    def _digit(self, digit: str) -> None:
        self.feed(d.DigitReceived(digit))

    def _caller_bye(self) -> None:
        self.caller_leg.stop_sending()  # no RTP after the caller's BYE
        self.feed(d.CallerHungUp())

    def feed(self, event: d.Event) -> None:
        try:
            commands = self.dialog.handle(event, self.loop.time())
        except Exception:
            log.exception("dialog error on %s", event)
            commands = [d.Hangup(d.EndReason.NORMAL), d.Finished(d.EndReason.NORMAL)]
        self._steps += 1
        line = step_line(self._steps, event, commands, self.dialog.state)
        if line is not None:
            self.service_log.add(line)
            if self.service_log.should_flush:  # a long call: do not hold it all to the end
                self.loop.create_task(self._flush_log())
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
        elif isinstance(c, d.Ringing):
            if c.early_media:
                self.inbound.session_progress(self.bridge.answer_sdp(self.inbound, self.caller_leg))
            else:
                self.inbound.ringing()
        elif isinstance(c, d.Play):
            self._play(c)
        elif isinstance(c, d.StopPlay):
            self.caller_leg.stop_playing()
        elif isinstance(c, d.Hangup):
            self.caller_leg.stop_sending()  # no RTP after our BYE
            if self.callee_leg is not None:
                self.callee_leg.peer = None
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
        elif isinstance(c, d.CheckLockout):
            self._spawn(self._check_lockout(c.caller))
        elif isinstance(c, d.RecordFailure):
            self._spawn(self._record_failure(c.caller, c.kind))
        elif isinstance(c, d.RedeemVoucher):
            self._spawn(self.bridge.recharge.redeem(c.code, c.account, c.caller))
        elif isinstance(c, d.CheckDestination):
            self._spawn(directory.check_destination(c.account, c.destination))
        elif isinstance(c, d.Connect):
            self._spawn(self._connect(c.destination))
        elif isinstance(c, d.EarlyMedia):
            if self.callee_leg is not None:
                self.callee_leg.peer = self.caller_leg
                self.caller_leg.relayed_into = True
        elif isinstance(c, d.Bridge):
            if self.callee_leg is not None:
                self.caller_leg.peer = self.callee_leg
                self.callee_leg.peer = self.caller_leg
                self.caller_leg.relayed_into = self.callee_leg.relayed_into = True
        elif isinstance(c, d.Unbridge):
            self.caller_leg.peer = None
            self.caller_leg.relayed_into = False
            if self.callee_leg is not None:
                self.callee_leg.peer = None
                self.callee_leg.relayed_into = False
        elif isinstance(c, d.RelayDigit):
            self._relay_digit(c.digit)
        elif isinstance(c, d.ReleaseCallee):
            self._release_callee()
        elif isinstance(c, d.ChargeStart):
            self.charging = self.bridge.charging.open_session(
                c.account, c.subscriber, c.calling, c.destination, self.inbound.call_id
            )
            self._queue_charging(c)
        elif isinstance(c, d.ChargeUpdate | d.ChargeStop | d.RefreshAccount):
            self._queue_charging(c)
        elif isinstance(c, d.Finished):
            self._finish(c.reason)

    def _play(self, c: d.Play) -> None:
        audio = self.bridge.prompts.sequence(c.language, c.prompts)
        if c.leg is d.Leg.CALLEE:
            if self.callee_leg is not None:
                self.callee_leg.play(audio)
            return
        play_id = c.play_id
        if c.loop:
            self.caller_leg.play(audio, loop=True)
        else:
            self.caller_leg.play(audio, lambda: self.feed(d.PromptFinished(play_id)))

    def _relay_digit(self, digit: str) -> None:
        """The caller's DTMF (RFC 4733 or SIP INFO) to the destination: RFC 4733 when its
        SDP offered telephone-event, else SIP INFO."""
        if self.callee_leg is not None and self.callee_leg.relay_dtmf(digit):
            return
        if self.outbound is not None:
            self.outbound.send_info_digit(digit)

    def _queue_charging(self, c: d.Command) -> None:
        self._charge_queue.put_nowait((c, self.charging))
        if self._charge_worker is None or self._charge_worker.done():
            self._charge_worker = self.loop.create_task(self._charge_loop())

    async def _check_lockout(self, caller: str) -> d.Event:
        return d.LockoutChecked(await self.bridge.lockout.is_locked(caller))

    async def _record_failure(self, caller: str, kind: str) -> d.Event:
        return d.FailureRecorded(await self.bridge.lockout.record_failure(caller, kind))

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
            return d.FarEndFailed(str(exc), 404, d.CalleeFailure.UNREACHABLE)
        if self.callee_leg is not None:  # the previous call's leg (another call)
            self.callee_leg.close()
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

        def media(description: sdp.MediaDescription) -> bool:
            try:
                codec = description.codec
            except sdp.NoCommonCodec:
                return False
            leg.configure((description.address, description.port), codec, description.dtmf_pt)
            return True

        def progress(status: int, early: sdp.MediaDescription | None) -> None:
            early_media = early is not None and media(early)
            self.feed(d.FarEndProgress(status, early_media))

        def answered(answer: sdp.MediaDescription | None) -> None:
            if answer is None:
                call.bye()
                self.feed(d.FarEndFailed("no SDP in answer", 488))
                return
            if not media(answer):
                call.bye()
                self.feed(d.FarEndFailed("no common codec", 488))
                return
            self.feed(d.FarEndAnswered(self.loop.time() - started))

        def failed(status: int, reason: str) -> None:
            leg.stop_sending()
            self.feed(d.FarEndFailed(reason, status))

        def hung_up() -> None:
            leg.stop_sending()  # no RTP after the destination's BYE
            self.caller_leg.peer = None
            self.feed(d.CalleeHungUp())

        call.on_progress = progress
        call.on_answer = answered
        call.on_failure = failed
        call.on_hangup = hung_up
        return None

    def _release_callee(self) -> None:
        self.caller_leg.peer = None
        if self.outbound is not None:
            self.outbound.on_hangup = None
            self.outbound.on_failure = None
            self.outbound.on_answer = None
            self.outbound.on_progress = None
            self.outbound.release()
        if self.callee_leg is not None:
            self.callee_leg.close()

    async def _charge_loop(self) -> None:
        while not self._charge_queue.empty():
            command, session = self._charge_queue.get_nowait()
            try:
                await self._charge_step(command, session)
            except Exception:  # e.g. the database is down: end the call cleanly
                log.exception("call %s: %s failed", self.inbound.call_id, type(command).__name__)
                if isinstance(command, d.RefreshAccount):
                    self.feed(d.AccountRefreshed(None))

    async def _charge_step(self, command: d.Command, session: ChargingSession | None) -> None:
        if isinstance(command, d.RefreshAccount):
            account = await self.bridge.directory.account_by_id(command.account_id)
            self.feed(d.AccountRefreshed(account))
        elif session is None:
            return
        elif isinstance(command, d.ChargeStart):
            self.feed(await session.start(command.connect_delay))
        elif isinstance(command, d.ChargeUpdate):
            self.feed(await session.update(command.used))
        elif isinstance(command, d.ChargeStop):
            await session.stop(command.used, command.cause)

    async def _flush_log(self) -> None:
        try:
            await self.service_log.flush(self.bridge.log_sink)
        except Exception:  # the log must never take a call down with it
            log.exception("call %s: cannot store the service log", self.inbound.call_id)

    def _finish(self, reason: d.EndReason) -> None:
        log.info("call %s ended: %s", self.inbound.call_id, reason.value)
        for name in list(self.timers):
            self._cancel_timer(name)
        self._release_callee()
        self.caller_leg.stop_sending()
        self.bridge.calls.pop(self.inbound.call_id, None)

        async def close_later() -> None:
            if self._charge_worker is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(asyncio.shield(self._charge_worker), 15)
            await self._flush_log()
            # The socket stays open briefly (sending nothing) to absorb the caller's last
            # packets instead of answering them with ICMP errors.
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
        lockout: Lockout | None = None,
        recharge: Recharge | None = None,
        log_sink: LogSink | None = None,
        prompts: PromptLibrary | None = None,
        max_dialogs: int = 100,
        max_cps: float = 10.0,
    ) -> None:
        self.sip_host = sip_host
        self.sip_port = sip_port
        self.directory = directory
        self.charging = charging
        self.settings = settings
        self.lockout: Lockout = lockout or DbLockout()
        self.recharge: Recharge = recharge or OcsRecharge(directory)
        self.log_sink: LogSink = log_sink or DbLogSink()
        self.prompts = prompts or PromptLibrary()
        self.admission = Admission(time.monotonic, max_dialogs=max_dialogs, per_second=max_cps)
        self._setting_up = 0
        self.calls: dict[str, CallController] = {}
        self._ua: SipUserAgent | None = None
        # |interval - 20 ms| of the latest finished calls (bounded: a flood of calls must
        # not grow memory for good)
        self.jitter_samples: deque[float] = deque(maxlen=50_000)
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def ua(self) -> SipUserAgent:
        if self._ua is None:
            raise RuntimeError("IVR bridge not started")
        return self._ua

    async def start(self) -> None:
        self._ua = await SipUserAgent.listen(self.sip_host, self.sip_port, self._on_invite)
        self._ua.admit = lambda: self.admission.admit(len(self.calls) + self._setting_up)
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
        self.jitter_samples.extend(abs(i - 0.020) for i in leg.stats.intervals)

    def _on_invite(self, inbound: InboundCall) -> None:
        self._setting_up += 1  # counts against the concurrency limit from now on
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
        finally:
            self._setting_up -= 1
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
    # the Diameter part of this process, when it runs, may have bound port 0: use its port
    port = ctx.diameter_port if ctx.diameter_port is not None else s.diameter_port
    gy = GyClient(s.diameter_host, port, s.ivr_origin_host, s.diameter_realm)
    await _connect_with_retry(gy)
    charging = CreditControlCharging(ReconnectingClient(gy), gy.origin_host, gy.realm)
    bridge = IvrBridge(
        s.sip_host, s.sip_port, directory=OcsDirectory(), charging=charging,
        max_dialogs=s.sip_max_dialogs, max_cps=s.sip_max_cps,
    )  # fmt: skip
    gy.on_asr(bridge.on_abort)
    gy.on_rar(bridge.on_reauth)
    await bridge.start()
    ctx.sip_port = bridge.sip_port  # its bound port (tests bind port 0)
    log.info("IVR bridge on SIP %s:%d", s.sip_host, bridge.sip_port)

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
