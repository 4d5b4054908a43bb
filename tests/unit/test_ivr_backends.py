"""Credit-control requests the bridge sends, how it reads answers, and the PIN lockout rule."""

from __future__ import annotations

from decimal import Decimal

from ivr_bridge import dialog as d
from ivr_bridge.backends import (
    CreditControlCharging,
    InProcessClient,
    ReconnectingClient,
    answer_to_event,
)
from ivr_bridge.lockout import ANONYMOUS, LockoutPolicy, LockReason, caller_key
from ocs.credit_control import (
    CCAnswer,
    CCRequest,
    FinalUnitAction,
    MsccAnswer,
    RequestType,
    SubscriptionIdType,
)

ACCOUNT = d.AccountInfo(1, "1001", "FR", 1000, Decimal("0.1"))


class Recorder:
    def __init__(self, answers: list[CCAnswer] | None = None, fail: bool = False) -> None:
        self.requests: list[CCRequest] = []
        self.answers = answers or []
        self.fail = fail

    async def handle(self, request: CCRequest) -> CCAnswer:
        self.requests.append(request)
        if self.fail:
            raise TimeoutError("no CCA")
        if self.answers:
            return self.answers.pop(0)
        return CCAnswer(2001, request.request_type, request.request_number, granted_time=60)


async def test_session_sends_i_u_t_with_numbers_usage_and_connect_delay():
    handler = Recorder()
    charging = CreditControlCharging(InProcessClient(handler), "ivr.test", "test")
    session = charging.open_session(
        ACCOUNT, d.SubscriberKind.ACCOUNT, "5173", "0141587070", "call-1"
    )
    assert (await session.start(3)) == d.ChargingAnswered(True, 60, False, 2001)
    await session.update(55)
    await session.stop(12)
    i, u, t = handler.requests
    assert [r.request_type for r in (i, u, t)] == [
        RequestType.INITIAL, RequestType.UPDATE, RequestType.TERMINATE,
    ]  # fmt: skip
    assert [r.request_number for r in (i, u, t)] == [0, 1, 2]
    assert {r.session_id for r in (i, u, t)} == {session.session_id}
    assert i.subscription_ids[0].type is SubscriptionIdType.END_USER_PRIVATE
    assert i.subscription_ids[0].data == "1001"
    assert i.called_party == "0141587070"
    assert i.calling_party == "5173"
    assert i.call_id == "call-1"
    assert i.connect_delay == 3 and t.connect_delay == 3
    assert i.mscc is not None and i.mscc[0].requested and i.mscc[0].used == ()
    assert u.mscc is not None and u.mscc[0].used[0].cc_time == 55
    assert t.mscc is not None and not t.mscc[0].requested and t.mscc[0].used[0].cc_time == 12
    assert t.termination_cause == 1


async def test_one_step_charges_the_caller_e164():
    handler = Recorder()
    charging = CreditControlCharging(InProcessClient(handler))
    session = charging.open_session(ACCOUNT, d.SubscriberKind.E164, "5173", "0141587070", "c")
    await session.start(0)
    sub = handler.requests[0].subscription_ids[0]
    assert (sub.type, sub.data) == (SubscriptionIdType.END_USER_E164, "5173")


async def test_unreachable_ocs_is_a_refusal():
    charging = CreditControlCharging(InProcessClient(Recorder(fail=True)))
    session = charging.open_session(ACCOUNT, d.SubscriberKind.ACCOUNT, "1", "2", "c")
    answer = await session.start(0)
    assert not answer.ok and answer.result_code == 3002


def test_answer_reading():
    top = CCAnswer(2001, RequestType.INITIAL, 0, granted_time=30,
                   final_unit_action=FinalUnitAction.TERMINATE)  # fmt: skip
    assert answer_to_event(top) == d.ChargingAnswered(True, 30, True, 2001)
    mscc = CCAnswer(2001, RequestType.UPDATE, 1,
                    mscc=(MsccAnswer(2001, 100, 1000, granted_time=45),))  # fmt: skip
    assert answer_to_event(mscc) == d.ChargingAnswered(True, 45, False, 2001)
    refused = CCAnswer(2001, RequestType.UPDATE, 1, mscc=(MsccAnswer(4012, 100, 1000),))
    assert answer_to_event(refused) == d.ChargingAnswered(False, 0, False, 4012)
    unknown = CCAnswer(5030, RequestType.INITIAL, 0)
    assert answer_to_event(unknown).ok is False


# ------------------------------------------------------------------ lockout


def test_lockout_rule_per_caller_then_global():
    policy = LockoutPolicy(max_failures=3, global_per_minute=10)
    assert policy.decide(2, 5) is None
    assert policy.decide(3, 5) is LockReason.CALLER  # this failure is the third
    assert policy.decide(1, 10) is LockReason.GLOBAL  # many caller IDs, one at a time
    assert policy.decide(3, 10) is LockReason.CALLER


def test_lockout_anonymous_callers_share_a_bucket():
    assert caller_key("") == caller_key("  ") == ANONYMOUS
    assert caller_key(" 5173 ") == "5173"


def test_lockout_policy_refuses_nonsense_limits():
    for bad in ({"max_failures": 0}, {"global_per_minute": 0}, {"window": 0}):
        try:
            LockoutPolicy(**bad)  # type: ignore[arg-type]
        except ValueError:
            continue
        raise AssertionError(f"accepted {bad}")


async def test_termination_cause_is_sent_in_ccr_t():
    handler = Recorder()
    charging = CreditControlCharging(InProcessClient(handler))
    for cause in d.TerminationCause:
        session = charging.open_session(ACCOUNT, d.SubscriberKind.ACCOUNT, "1", "2", "c")
        await session.start(0)
        await session.stop(5, cause)
        assert handler.requests[-1].termination_cause == int(cause)
    # RFC 6733 §8.15 values
    assert [int(c) for c in d.TerminationCause] == [1, 3, 4, 6]


class FlakyClient:
    def __init__(self) -> None:
        self.is_open = False
        self.connects = 0
        self.recorder = Recorder()

    async def connect(self) -> None:
        self.connects += 1
        self.is_open = True

    async def request(self, req: CCRequest) -> CCAnswer:
        return await self.recorder.handle(req)


async def test_reconnecting_client_reopens_lost_connection_once():
    flaky = FlakyClient()
    client = ReconnectingClient(flaky, min_interval=60)
    charging = CreditControlCharging(client)
    session = charging.open_session(ACCOUNT, d.SubscriberKind.ACCOUNT, "1", "2", "c")
    assert (await session.start(0)).ok
    assert flaky.connects == 1
    client._last_attempt -= 120  # a while later, the connection is lost
    flaky.is_open = False
    await session.update(10)
    assert flaky.connects == 2
    flaky.is_open = False  # lost again at once: no new attempt within min_interval
    await session.stop(1)
    assert flaky.connects == 2
