"""Keypad presses (DTMF) driving calls, end to end through the fake OpenAI (issue 6).

The graph in tests/configs/dtmf.yaml maps 1 -> Billing, 123# -> Support, 0 -> transfer,
9 -> hang up, * -> a message, and drops other keys.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from callserver.calls.dtmf import Keypad
from callserver.engines.realtime.signals import realtime_signals
from callserver.graph import load_config
from callserver.graph.context import CallInfo
from callserver.graph.dtmf_models import DtmfAction, DtmfPlan
from callserver.testing import server_events as ev
from callserver.testing.fake_openai import FakeOpenAI
from callserver.testing.fake_realtime import FakeConnection
from callserver.testing.harness import RunningServer
from tests.conftest import ROOT, StartServer
from tests.e2e import assert_idle, ended_record, place_call, wait_for

KEYPAD = ROOT / "tests" / "configs" / "dtmf.yaml"

AGENT_CHANGES = ("session.update", "conversation.item.create", "response.create")


def _instructions_with(text: str):
    return lambda e: text in (e.get("session", {}).get("instructions") or "")


def _user_text(event: dict) -> str:
    content = event.get("item", {}).get("content") or [{}]
    return str(content[0].get("text", ""))


async def _connected(start_callserver: StartServer, fake: FakeOpenAI, config: Path = KEYPAD):
    server = await start_callserver(config)
    call_id, _ = await place_call(server, fake)
    conn = await fake.wait_connected(call_id)
    await conn.expect("session.update")  # the starting agent's session
    return server, call_id, conn


def _sent_after(conn: FakeConnection, mark: int) -> list[str]:
    return [e.get("type") for e in conn.received[mark:] if e.get("type") in AGENT_CHANGES]


async def _current_agent(server: RunningServer, call_id: str) -> str | None:
    record = await server.services.manager.registry.get(call_id)
    return record.current_agent if record else None


async def test_key_hands_off_to_the_mapped_agent(
    start_callserver: StartServer, fake_openai: FakeOpenAI
) -> None:
    server, call_id, conn = await _connected(start_callserver, fake_openai)
    await conn.send(ev.dtmf("1"))
    update = await conn.expect("session.update", _instructions_with("billing questions only"))
    assert "transfer_to_front_desk" in {t["name"] for t in update["session"]["tools"]}
    await wait_for(lambda: _is_agent(server, call_id, "Billing"), what="Billing on the record")
    record = await server.services.manager.registry.get(call_id)
    assert record.handoffs == 1 and record.agents_visited == ["Front Desk", "Billing"]
    await fake_openai.caller_hangs_up(call_id)
    assert (await ended_record(server, call_id)).end_reason == "caller_hangup"
    await assert_idle(server)


async def _is_agent(server: RunningServer, call_id: str, name: str) -> bool:
    return await _current_agent(server, call_id) == name


async def test_key_transfers_the_call(
    start_callserver: StartServer, fake_openai: FakeOpenAI
) -> None:
    server, call_id, conn = await _connected(start_callserver, fake_openai)
    await conn.send(ev.dtmf("0"))
    record = await ended_record(server, call_id)
    assert record.end_reason == "transferred"
    refers = fake_openai.requests_for(call_id, "refer")
    assert [r.json for r in refers] == [{"target_uri": "tel:+14155550100"}]
    assert not fake_openai.hangup_observed(call_id)  # the call now belongs to the target
    await assert_idle(server)


async def test_key_ends_the_call(start_callserver: StartServer, fake_openai: FakeOpenAI) -> None:
    server, call_id, conn = await _connected(start_callserver, fake_openai)
    await conn.send(ev.dtmf("9"))
    record = await ended_record(server, call_id)
    assert record.end_reason == "dtmf_end_call"
    await wait_for(lambda: fake_openai.hangup_observed(call_id), what="hangup")
    await assert_idle(server)


async def test_hash_sequence_wins_over_its_first_key(
    start_callserver: StartServer, fake_openai: FakeOpenAI
) -> None:
    server, call_id, conn = await _connected(start_callserver, fake_openai)
    mark = len(conn.received)
    await conn.send([ev.dtmf("1"), ev.dtmf("2"), ev.dtmf("3"), ev.dtmf("#")])
    await conn.expect("session.update", _instructions_with("technical support"))
    await wait_for(lambda: _is_agent(server, call_id, "Support"), what="Support")
    # "1" alone (Billing) never fired: only the sequence's session.update was sent.
    assert _sent_after(conn, mark) == ["session.update"]
    record = await server.services.manager.registry.get(call_id)
    assert record.agents_visited == ["Front Desk", "Support"]


async def test_sequence_start_alone_falls_back_after_the_pause(
    start_callserver: StartServer, fake_openai: FakeOpenAI
) -> None:
    """``1`` could begin ``123#``: it waits for the inter-digit timeout, then acts as ``1``."""
    _, _, conn = await _connected(start_callserver, fake_openai)
    await conn.send(ev.dtmf("1"))
    await conn.expect("session.update", _instructions_with("billing questions only"), timeout=3)


async def test_message_key_speaks_to_the_agent(
    start_callserver: StartServer, fake_openai: FakeOpenAI
) -> None:
    _, _, conn = await _connected(start_callserver, fake_openai)
    await conn.send(ev.dtmf("*"))
    item = await conn.expect("conversation.item.create")
    assert item["item"]["role"] == "user"
    assert _user_text(item) == "The caller pressed star"
    await conn.expect("response.create")


async def test_unmapped_key_is_ignored(
    start_callserver: StartServer, fake_openai: FakeOpenAI
) -> None:
    server, call_id, conn = await _connected(start_callserver, fake_openai)
    mark = len(conn.received)
    # 7 is unmapped; 12# is a broken sequence; junk events must not break anything.
    await conn.send(
        [
            ev.dtmf("7"),
            ev.dtmf("1"),
            ev.dtmf("2"),
            ev.dtmf("#"),
            {"type": "input_audio_buffer.dtmf_event_received"},
            {"type": "input_audio_buffer.dtmf_event_received", "event": 5},
            {"type": "input_audio_buffer.dtmf_event_received", "event": "A"},
            ev.dtmf("*"),  # a mapped key after them proves they were all processed
        ]
    )
    item = await conn.expect("conversation.item.create")
    assert _user_text(item) == "The caller pressed star"
    await conn.expect("response.create")
    assert _sent_after(conn, mark) == ["conversation.item.create", "response.create"]
    record = await server.services.manager.registry.get(call_id)
    assert record.state.value == "active" and record.handoffs == 0


async def test_unmapped_key_as_message_when_configured(
    start_callserver: StartServer, fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    config = tmp_path / "relay.yaml"
    config.write_text(
        "start: a\nagents:\n  a:\n    instructions: Answer keys.\ndtmf:\n  unmatched: message\n"
    )
    _, _, conn = await _connected(start_callserver, fake_openai, config)
    await conn.send(ev.dtmf("5"))
    item = await conn.expect("conversation.item.create")
    assert _user_text(item) == "The caller pressed 5"
    await conn.expect("response.create")


async def test_graph_without_dtmf_ignores_keys(
    start_callserver: StartServer, fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    config = tmp_path / "plain.yaml"
    config.write_text("start: a\nagents:\n  a:\n    instructions: Hi.\n")
    server, call_id, conn = await _connected(start_callserver, fake_openai, config)
    mark = len(conn.received)
    await conn.send([ev.dtmf("1"), ev.dtmf("#")])
    await fake_openai.caller_hangs_up(call_id)
    await ended_record(server, call_id)
    assert _sent_after(conn, mark) == []


async def test_key_for_the_current_agent_is_not_a_handoff(
    start_callserver: StartServer, fake_openai: FakeOpenAI
) -> None:
    server, call_id, conn = await _connected(start_callserver, fake_openai)
    await conn.send(ev.dtmf("1"))
    await conn.expect("session.update", _instructions_with("billing questions only"), timeout=3)
    await wait_for(lambda: _is_agent(server, call_id, "Billing"), what="Billing")
    mark = len(conn.received)
    await conn.send(ev.dtmf("1"))
    await asyncio.sleep(0.6)  # past the pause: "1" acted (it could have begun 123#)
    await conn.send(ev.dtmf("*"))
    await conn.expect("conversation.item.create", timeout=3)
    assert _sent_after(conn, mark)[0] == "conversation.item.create"
    record = await server.services.manager.registry.get(call_id)
    assert record.handoffs == 1


# ---- the state machine alone, with recorded actions ----------------------------------------


class RecordedActions:
    """KeypadActions that only remember what they were asked to do."""

    def __init__(self, fail: bool = False) -> None:
        self.done: list[tuple[str, str]] = []
        self.fail = fail
        self.changed = asyncio.Event()

    async def _note(self, kind: str, value: str) -> None:
        self.done.append((kind, value))
        self.changed.set()
        if self.fail:
            raise RuntimeError("boom")

    async def handoff(self, agent_key: str) -> None:
        await self._note("handoff", agent_key)

    async def transfer(self, target: str) -> None:
        await self._note("transfer", target)

    async def end_call(self) -> None:
        await self._note("end_call", "")

    async def message(self, text: str) -> None:
        await self._note("message", text)


PLAN = DtmfPlan(
    keys={
        "1": DtmfAction("handoff", "billing"),
        "0": DtmfAction("transfer", "tel:+14155550100"),
        "#": DtmfAction("end_call"),
        "123#": DtmfAction("handoff", "support"),
        "*9#": DtmfAction("message", "star nine"),
    },
    unmatched="message",
    inter_digit_timeout_s=0.2,
)


async def _press(keys: list, plan: DtmfPlan = PLAN, settle: float = 0.05, **kw):
    actions = RecordedActions(**kw)
    keypad = Keypad(plan, actions, call_id="c1")
    task = asyncio.create_task(keypad.run())
    for key in keys:
        for signal in realtime_signals(key if isinstance(key, dict) else ev.dtmf(key)):
            keypad.on_signal(signal)
    await asyncio.sleep(settle)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    return actions.done


@pytest.mark.parametrize(
    ("keys", "settle", "expected"),
    [
        (["0"], 0.05, [("transfer", "tel:+14155550100")]),
        (["#"], 0.05, [("end_call", "")]),  # '#' alone starts no sequence
        (["1"], 0.05, []),  # may still become 123#
        (["1"], 0.4, [("handoff", "billing")]),  # ... until the pause
        (["1", "2", "3", "#"], 0.05, [("handoff", "support")]),
        (["*", "9", "#"], 0.05, [("message", "star nine")]),
        (["1", "5", "#"], 0.05, [("message", "The caller pressed 15#")]),
        (["1", "2"], 0.4, [("message", "The caller pressed 12")]),
        (["5", "0"], 0.05, [("message", "The caller pressed 5"), ("transfer", "tel:+14155550100")]),
        (
            ["1", "2", "3", "#", "0"],
            0.05,
            [("handoff", "support"), ("transfer", "tel:+14155550100")],
        ),
    ],
)
async def test_keypad_matching(keys: list[str], settle: float, expected: list) -> None:
    assert await _press(keys, settle=settle) == expected


async def test_keypad_ignores_odd_events_and_survives_failing_actions() -> None:
    odd = [
        {"type": "input_audio_buffer.dtmf_event_received"},
        {"type": "input_audio_buffer.dtmf_event_received", "event": None},
        {"type": "input_audio_buffer.dtmf_event_received", "event": ["1"]},
        {"type": "input_audio_buffer.dtmf_event_received", "event": "12"},
        {"type": "input_audio_buffer.dtmf_event_received", "event": "D"},
        {"type": "response.done"},
        {},
    ]
    assert await _press(odd) == []
    # A failing action is logged; the next key still works.
    assert await _press(["0", "#"], fail=True) == [
        ("transfer", "tel:+14155550100"),
        ("end_call", ""),
    ]


async def test_keypad_unmatched_ignore_and_timer_cancelled_on_close() -> None:
    plan = DtmfPlan(keys={"123#": DtmfAction("end_call")}, inter_digit_timeout_s=0.1)
    assert await _press(["7", "1"], plan=plan, settle=0.3) == []
    actions = RecordedActions()
    keypad = Keypad(plan, actions, call_id="c1")
    task = asyncio.create_task(keypad.run())
    for signal in realtime_signals(ev.dtmf("1")):  # a sequence is pending: its timer is in run()
        keypad.on_signal(signal)
    await asyncio.sleep(0.02)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert task.cancelled() and actions.done == []


# ---- loading ----------------------------------------------------------------------------------


def test_keypad_config_loads_into_a_typed_plan() -> None:
    graph = load_config(KEYPAD, env={}).graphs["keypad"]
    built = graph.build(CallInfo(call_id="c1", caller=None, dialed=None))
    assert built.dtmf == DtmfPlan(
        keys={
            "1": DtmfAction("handoff", "billing"),
            "0": DtmfAction("transfer", "tel:+14155550100"),
            "9": DtmfAction("end_call"),
            "*": DtmfAction("message", "The caller pressed star"),
            "123#": DtmfAction("handoff", "support"),
        },
        unmatched="ignore",
        inter_digit_timeout_s=0.4,
    )
    assert built.dtmf.sequence_starts == {"1"}
    # Support is reachable only by a key: no "cannot be reached" warning for it.
    assert load_config(KEYPAD, env={}).warnings == ()


def test_dtmf_section_defaults(tmp_path: Path) -> None:
    (tmp_path / "g.yaml").write_text(
        "start: a\nagents:\n  a:\n    instructions: Hi.\n"
        "dtmf:\n  keys:\n    '#': {end_call: true}\n"
    )
    plan = load_config(tmp_path / "g.yaml", env={}).graphs["g"].dtmf
    assert plan.unmatched == "message" and plan.inter_digit_timeout_s == 3.0
    assert plan.keys == {"#": DtmfAction("end_call")} and plan.sequence_starts == frozenset()
