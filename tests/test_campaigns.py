"""Campaigns end to end (in process, real sockets, the GPT-Live fake): limits, outcomes and
retries, calling windows, do-not-call, pause/resume/cancel, bad input, export."""

from __future__ import annotations

import csv
import io
import itertools
import json
import time

import pytest

from callserver.records.post_call import build_call_ended_event
from callserver.testing.fake_live_outbound import Callee
from callserver.testing.fake_openai import FakeOpenAI
from tests.e2e import assert_idle, wait_for
from tests.outbound_support import (
    LIVE_DIALER,
    OUTBOUND_CONFIG,
    concurrency_probe,
    get,
    post,
    wait_campaign,
)


def numbers(count: int, start: int = 1000) -> list[str]:
    return [f"+1415555{start + n:04d}" for n in range(count)]


@pytest.fixture
async def dialing(start_callserver, fake_openai: FakeOpenAI, tmp_path):
    """callserver with the GPT-Live dialer, campaigns in a SQLite file of the test's own."""
    fake_openai.live.outbound.default = Callee(ring_s=0.02, hangs_up_after=0.15)
    server = await start_callserver(
        OUTBOUND_CONFIG,
        campaign_db_path=tmp_path / "campaigns.sqlite3",
        campaign_poll_s=0.1,
        **LIVE_DIALER,
    )
    events: list[dict] = []
    server.services.manager.end_listeners.append(
        lambda record: events.append(build_call_ended_event(record, redact_numbers=False))
    )
    server.events = events  # type: ignore[attr-defined]
    return server


async def test_campaign_outcomes_retries_dnc(dialing, fake_openai: FakeOpenAI) -> None:
    live = fake_openai.live.outbound
    rows = [{"to": n} for n in numbers(4)]
    # Rings long enough for the sideband to attach on a loaded machine (the outcome arrives
    # on it; at 20 ms a slow attach found the call gone and read it as "failed").
    live.script(rows[1]["to"], outcome="busy", ring_s=0.3)
    live.script(rows[2]["to"], outcome="no_answer", ring_s=0.3)
    live.script(rows[3]["to"], outcome="voicemail", ring_s=0.3)
    rows += [{"to": "+14155559999"}, {"to": rows[0]["to"]}]  # on the DNC list; a duplicate
    response = await post(
        dialing,
        "/admin/campaigns",
        {
            "graph": "survey",
            "rows": rows,
            "calls_per_minute": 1200,
            "max_concurrent": 3,
            "retry": {"busy": {"max_attempts": 2, "backoff": 0.1}},
            "do_not_call": ["+1 415 555 9999"],
            "name": "spring survey",
        },
    )
    assert response.status_code == 201, response.text
    created = response.json()
    assert created["counts"]["skipped"] == 2 and created["outcomes"] == {"dnc": 1, "duplicate": 1}
    done = await wait_campaign(dialing, created["id"])
    assert done["outcomes"] == {
        "completed": 1, "busy": 1, "no_answer": 1, "voicemail": 1, "dnc": 1, "duplicate": 1
    }  # fmt: skip
    assert done["dials"] == 5  # the busy row twice, per its retry policy
    assert len(live.dialed(rows[1]["to"])) == 2
    for row in (rows[0], rows[2], rows[3]):
        assert len(live.dialed(row["to"])) == 1
    assert live.dialed("+14155559999") == []
    # one call.ended event per attempt, each naming its campaign, row and attempt
    mine = [e["data"]["outbound"] for e in dialing.events]
    assert sorted((o["row"], o["attempt"]) for o in mine) == [
        (1, 1),
        (2, 1),
        (2, 2),
        (3, 1),
        (4, 1),
    ]
    assert {o["campaign_id"] for o in mine} == {created["id"]}
    results = (await get(dialing, f"/admin/campaigns/{created['id']}/results")).text
    by_row = {r["row"]: r for r in map(json.loads, results.splitlines())}
    assert by_row[2]["outcome"] == "busy" and [c["outcome"] for c in by_row[2]["calls"]] == [
        "busy",
        "busy",
    ]
    assert by_row[5]["status"] == "skipped" and by_row[5]["outcome"] == "dnc"
    table = list(csv.DictReader(io.StringIO(
        (await get(dialing, f"/admin/campaigns/{created['id']}/results?format=csv")).text
    )))  # fmt: skip
    assert [r["outcome"] for r in table] == [
        "completed",
        "busy",
        "no_answer",
        "voicemail",
        "dnc",
        "duplicate",
    ]
    await assert_idle(dialing)


async def test_pace_and_max_concurrent(dialing, fake_openai: FakeOpenAI) -> None:
    live = fake_openai.live.outbound
    live.default = Callee(ring_s=0.02, hangs_up_after=0.3)
    samples = concurrency_probe(fake_openai)
    rows = [{"to": n} for n in numbers(8)]
    response = await post(
        dialing,
        "/admin/campaigns",
        {"graph": "survey", "rows": rows, "calls_per_minute": 600, "max_concurrent": 2},
    )
    campaign_id = response.json()["id"]
    await wait_campaign(dialing, campaign_id)
    times = [c.at for c in live.creates]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    # 600/min: one per 100 ms over the campaign; a late runner catches up at no more than
    # twice the pace (50 ms apart, less the jitter of the request to the fake)
    assert len(times) == 8 and times[-1] - times[0] >= 7 * 0.1 * 0.95 and min(gaps) >= 0.03
    assert max(samples) == 2  # calls live at the fake when one more is placed: never above 2
    await assert_idle(dialing)


async def test_calling_window(dialing, fake_openai: FakeOpenAI) -> None:
    """Outside the callee's calling hours nothing is dialed; the row waits for the opening."""
    now = time.gmtime()
    closed = {
        "start": f"{(now.tm_hour + 2) % 24:02d}:00",
        "end": f"{(now.tm_hour + 3) % 24:02d}:00",
    }
    response = await post(
        dialing,
        "/admin/campaigns",
        {
            "graph": "survey",
            "rows": [{"to": "+14155550401", "timezone": "UTC"}, {"to": "+14155550402"}],
            "calls_per_minute": 600,
            "max_concurrent": 2,
            "window": closed,
            "timezone": "UTC",
        },
    )
    campaign_id = response.json()["id"]

    async def deferred() -> bool:
        rows = (await get(dialing, f"/admin/campaigns/{campaign_id}/results")).text.splitlines()
        return all(json.loads(r)["next_at"] > time.time() + 3000 for r in rows)

    await wait_for(deferred, what="rows deferred to the window")
    assert fake_openai.live.outbound.creates == []
    info = (await get(dialing, f"/admin/campaigns/{campaign_id}")).json()
    assert info["state"] == "running" and info["counts"]["pending"] == 2
    assert (await post(dialing, f"/admin/campaigns/{campaign_id}/cancel", {})).json()[
        "state"
    ] == "cancelled"


async def test_pause_resume_cancel(dialing, fake_openai: FakeOpenAI) -> None:
    rows = [{"to": n} for n in numbers(6, 2000)]
    response = await post(
        dialing,
        "/admin/campaigns",
        {"graph": "survey", "rows": rows, "calls_per_minute": 120, "max_concurrent": 1},
    )
    campaign_id = response.json()["id"]
    await wait_for(lambda: len(fake_openai.live.outbound.creates) >= 1, what="first dial")
    paused = await post(dialing, f"/admin/campaigns/{campaign_id}/pause", {})
    assert paused.json()["state"] == "paused"
    dialed = len(fake_openai.live.outbound.creates)
    await __import__("asyncio").sleep(0.8)  # 120/min = one per 0.5 s: paused, none more
    assert len(fake_openai.live.outbound.creates) == dialed
    again = await post(dialing, f"/admin/campaigns/{campaign_id}/pause", {})
    assert again.status_code == 200  # pausing a paused campaign changes nothing
    assert (await post(dialing, f"/admin/campaigns/{campaign_id}/resume", {})).json()[
        "state"
    ] == "running"
    await wait_for(lambda: len(fake_openai.live.outbound.creates) > dialed, what="dialing again")
    cancelled = (await post(dialing, f"/admin/campaigns/{campaign_id}/cancel", {})).json()
    assert cancelled["state"] == "cancelled" and cancelled["counts"]["cancelled"] >= 1
    resumed = await post(dialing, f"/admin/campaigns/{campaign_id}/resume", {})
    assert resumed.status_code == 409
    unknown = await post(dialing, "/admin/campaigns/cmp_nope/pause", {})
    assert unknown.status_code == 404
    count = len(fake_openai.live.outbound.creates)
    await __import__("asyncio").sleep(0.6)
    assert len(fake_openai.live.outbound.creates) == count
    await assert_idle(dialing, timeout=3)


async def test_bad_campaigns_store_and_dial_nothing(dialing, fake_openai: FakeOpenAI) -> None:
    body = {
        "graph": "reminders",
        "rows": [
            {"to": "+14155550501", "variables": {"name": "A"}},
            {"to": "4155550502", "variables": {"name": "B"}},
            {"to": "+14155550503"},
            {"to": "+14155550504", "variables": {"name": "D", "nmae": "x"}},
            {"to": "+14155550505", "variables": {"name": "E"}, "timezone": "Mars/Olympus"},
            {"to": "+14155550506", "variables": {"name": "F"}, "phone": "x"},
        ],
        "calls_per_minute": 0,
        "max_concurrent": 2.5,
        "retry": {"unknown": {"max_attempts": 2}},
        "window": {"start": "25:00", "end": "20:00"},
    }
    response = await post(dialing, "/admin/campaigns", body)
    assert response.status_code == 400
    errors = {(e["row"], e["column"]) for e in response.json()["errors"]}
    assert errors == {
        (None, "calls_per_minute"),
        (None, "max_concurrent"),
        (None, "retry"),
        (None, "window"),
        (2, "to"),
        (3, "variables.name"),
        (4, "variables.nmae"),
        (5, "timezone"),
        (6, "phone"),
    }
    messages = {(e["row"], e["column"]): e["message"] for e in response.json()["errors"]}
    assert "never retried" in messages[(None, "retry")]
    assert "did you mean 'name'" in messages[(4, "variables.nmae")]
    assert (await get(dialing, "/admin/campaigns")).json()["campaigns"] == []
    assert fake_openai.live.outbound.creates == []
    bad_graph = await post(
        dialing,
        "/admin/campaigns",
        {
            "graph": "followup",
            "rows": [{"to": "+14155550507", "variables": {"name": "x"}}],
            "calls_per_minute": 10,
            "max_concurrent": 1,
        },
    )
    assert bad_graph.status_code == 400
    assert bad_graph.json()["errors"][0]["column"] == "dialer"  # no Twilio dialer here


async def test_not_enabled_pauses_the_campaign(dialing, fake_openai: FakeOpenAI) -> None:
    """403 outbound_sip_not_enabled: one clear reason, the campaign paused, no row used up."""
    fake_openai.live.outbound.enabled = False
    rows = [{"to": n} for n in numbers(3, 3000)]
    response = await post(
        dialing,
        "/admin/campaigns",
        {"graph": "survey", "rows": rows, "calls_per_minute": 600, "max_concurrent": 3},
    )
    info = await wait_campaign(dialing, response.json()["id"], "paused")
    assert "outbound_sip_not_enabled" in info["reason"]
    assert info["counts"]["pending"] == 3 and info["dials"] == 0
    fake_openai.live.outbound.enabled = True
    await post(dialing, f"/admin/campaigns/{info['id']}/resume", {})
    done = await wait_campaign(dialing, info["id"])
    assert done["outcomes"] == {"completed": 3}
    await assert_idle(dialing)


async def test_unknown_is_never_retried(dialing, fake_openai: FakeOpenAI) -> None:
    fake_openai.live.outbound.fail_create(504, places_call=True)
    response = await post(
        dialing,
        "/admin/campaigns",
        {
            "graph": "survey",
            "rows": [{"to": "+14155550601"}],
            "calls_per_minute": 600,
            "max_concurrent": 1,
            "retry": {"failed": {"max_attempts": 5, "backoff": 0}},
        },
    )
    done = await wait_campaign(dialing, response.json()["id"])
    assert done["outcomes"] == {"unknown": 1} and done["dials"] == 1
    assert len(fake_openai.live.outbound.dialed("+14155550601")) == 1
    await assert_idle(dialing)
