"""``callserver call`` and ``callserver campaign ...`` against a running instance."""

from __future__ import annotations

import asyncio
import json

import pytest

from callserver import cli
from callserver.outbound.campaigns.files import CampaignFileError, read_campaign_file
from callserver.testing.fake_live_outbound import Callee
from callserver.testing.fake_openai import FakeOpenAI
from tests.outbound_support import ADMIN_TOKEN, LIVE_DIALER, OUTBOUND_CONFIG, wait_campaign


async def run_cli(*argv: str) -> int:
    """The CLI is synchronous (httpx.Client): run it beside the server's event loop."""
    return await asyncio.to_thread(cli.main, list(argv))


@pytest.fixture
async def server(start_callserver, fake_openai: FakeOpenAI, tmp_path):
    fake_openai.live.outbound.default = Callee(ring_s=0.02, hangs_up_after=0.2)
    return await start_callserver(
        OUTBOUND_CONFIG, campaign_db_path=tmp_path / "c.sqlite3", campaign_poll_s=0.1, **LIVE_DIALER
    )


def conn(server) -> tuple[str, ...]:
    return ("--url", server.url, "--token", ADMIN_TOKEN)


async def test_call_command(server, fake_openai: FakeOpenAI, capsys) -> None:
    code = await run_cli(
        "call", "+14155550701", "--graph", "reminders", "--var", "name=Ana", *conn(server), "--json"
    )
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert out["outcome"] == "completed" and out["status"] == "ended"
    [create] = fake_openai.live.outbound.creates
    assert "Ana" in create.body["session"]["instructions"]
    code = await run_cli(
        "call", "4155550701", "--graph", "reminders", "--var", "name=A", *conn(server)
    )
    assert code == 1
    assert "refused (to)" in capsys.readouterr().err
    assert await run_cli("call", "+14155550701", "--graph", "reminders", "--url", server.url) == 2


async def test_campaign_commands(server, fake_openai: FakeOpenAI, tmp_path, capsys) -> None:
    rows = tmp_path / "rows.csv"
    rows.write_text("to,name,appointment\n+14155550801,Ana,Monday\n+1 415 555 0802,Bo,\n")
    code = await run_cli(
        "campaign", "start", str(rows), "--graph", "reminders", "--cpm", "600",
        "--max-concurrent", "2", "--retry", "busy=2/1s", *conn(server), "--json",
    )  # fmt: skip
    assert code == 0
    captured = capsys.readouterr()
    data = json.loads(captured.out)
    assert data["state"] == "completed" and data["outcomes"] == {"completed": 2}
    assert "2/2 100%" in captured.err  # the progress bar's last line
    campaign_id = data["id"]
    out = tmp_path / "results.csv"
    assert (
        await run_cli(
            "campaign", "export", campaign_id, "--format", "csv", "-o", str(out), *conn(server)
        )
        == 0
    )
    assert out.read_text().splitlines()[0].startswith("row,to,status,outcome")
    assert await run_cli("campaign", "status", campaign_id, *conn(server)) == 0
    assert "completed" in capsys.readouterr().out
    assert await run_cli("campaign", "pause", campaign_id, *conn(server)) == 1  # completed
    jsonl = tmp_path / "rows.jsonl"
    jsonl.write_text('{"to": "+14155550803", "variables": {"name": "Cy"}}\n')
    assert (
        await run_cli(
            "campaign", "start", str(jsonl), "--graph", "reminders", "--no-follow", *conn(server)
        )
        == 0
    )
    started = capsys.readouterr().out.strip()
    await wait_campaign(server, started)
    assert await run_cli("campaign", "status", *conn(server)) == 0


async def test_bad_files_send_nothing(server, fake_openai: FakeOpenAI, tmp_path, capsys) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("to,name\n+14155550901,Ana\n415,Bo\n+14155550903\n")
    assert await run_cli("campaign", "start", str(bad), "--graph", "reminders", *conn(server)) == 1
    err = capsys.readouterr().err
    assert "line 3, column to" in err and "line 4, column (row): 1 cells for 2 columns" in err
    assert "nothing was sent" in err
    # valid as a file, but the graph needs a variable the file lacks: the server says which
    # row, the CLI says which line
    lacking = tmp_path / "lacking.csv"
    lacking.write_text("to,name\n+14155550904,Ana\n+14155550905,\n")
    assert (
        await run_cli("campaign", "start", str(lacking), "--graph", "reminders", *conn(server)) == 1
    )
    err = capsys.readouterr().err
    assert f"{lacking}:3 variables.name" in err and "nothing dialed" in err
    assert fake_openai.live.outbound.creates == []


def test_campaign_file_errors(tmp_path) -> None:
    jsonl = tmp_path / "rows.jsonl"
    jsonl.write_text('{"to": "+14155550001"}\n\nnot json\n[1]\n{"to": "+1"}\n')
    with pytest.raises(CampaignFileError) as info:
        read_campaign_file(jsonl)
    assert [(i.line, i.column) for i in info.value.issues] == [
        (3, "(json)"),
        (4, "(row)"),
        (5, "to"),
    ]
    header = tmp_path / "h.csv"
    header.write_text("phone,name,name\n+14155550001,a,b\n")
    with pytest.raises(CampaignFileError) as info:
        read_campaign_file(header)
    assert {(i.line, i.column) for i in info.value.issues} == {(1, "to"), (1, "name"), (2, "to")}
    ok = tmp_path / "ok.csv"
    ok.write_text("to,timezone,name\n+14155550001,Europe/Paris,Ana\n\n+14155550002,,\n")
    parsed = read_campaign_file(ok)
    assert parsed.rows == [
        {"to": "+14155550001", "timezone": "Europe/Paris", "variables": {"name": "Ana"}},
        {"to": "+14155550002"},
    ]
    assert parsed.lines == [2, 4]
