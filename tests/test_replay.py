"""Replay: record -> replay round trips, divergence reports, broken cassettes, CLI, plugin.

The project's own cassettes (tests/replays/) are collected as tests by the pytest plugin;
here they are also the material for deliberate changes that must make a replay fail.
"""

from __future__ import annotations

import functools
import io
import shutil
from pathlib import Path

import pytest

from callserver.examples import frontdesk
from callserver.records.cassette_reader import read_cassette
from callserver.records.redaction import REDACTED
from callserver.testing import replay_match as rm
from callserver.testing.recording import SCENARIOS, recording_server
from callserver.testing.replay import Replayer, run_replay_cli

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "config" / "agents.yaml"
REPLAYS = ROOT / "tests" / "replays"


async def test_record_then_replay_passes(tmp_path: Path) -> None:
    async with recording_server(CONFIG, tmp_path) as (fake, server, _factory):
        call_ids = [await SCENARIOS[name](fake, server) for name in ("tool_call", "end_call")]
    paths = [next(tmp_path.rglob(f"{call_id}.cassette.jsonl")) for call_id in call_ids]
    async with Replayer(CONFIG) as replayer:
        results = await replayer.replay_all(paths)
    assert [r.status for r in results] == ["passed", "passed"], [r.report() for r in results]


def _config_copy(tmp_path: Path) -> Path:
    target = tmp_path / "config"
    shutil.copytree(ROOT / "config", target)
    return target / "agents.yaml"


async def test_changed_prompt_fails_with_a_diff(tmp_path: Path) -> None:
    config = _config_copy(tmp_path)
    prompt = config.parent / "prompts" / "customer_service.md"
    prompt.write_text(prompt.read_text().replace("Speak briefly", "Speak at length"))
    async with Replayer(config) as replayer:
        result = await replayer.replay(REPLAYS / "tool_call.cassette.jsonl")
    assert result.status == "failed"
    first = str(result.first_divergence)
    assert first.startswith("turn 0: REST accept body differs"), first
    assert "instructions: expected" in first
    assert "Speak briefly" in first and "Speak at length" in first
    assert "FAIL" in result.report() and "tool_call" in result.report()


async def test_changed_specialist_prompt_fails_at_the_handoff(tmp_path: Path) -> None:
    config = _config_copy(tmp_path)
    config.write_text(
        config.read_text().replace("You specialize in billing", "You only do billing")
    )
    async with Replayer(config) as replayer:
        result = await replayer.replay(REPLAYS / "handoff_and_back.cassette.jsonl")
    assert result.status == "failed"
    first = str(result.first_divergence)
    assert first.startswith("turn 2: session.update ('You specialize in billing"), first
    assert "differs from the recording" in first
    assert "session.instructions: expected You specialize in billing" in first


async def test_changed_tool_fails_with_its_output(monkeypatch: pytest.MonkeyPatch) -> None:
    original = frontdesk.get_weather

    @functools.wraps(original)
    def rainy(city: str) -> str:
        return f"The weather in {city} is rainy, 50°F"

    monkeypatch.setattr(frontdesk, "get_weather", rainy)
    async with Replayer(CONFIG, execute=["get_weather"]) as replayer:
        changed = await replayer.replay(REPLAYS / "tool_call.cassette.jsonl")
    assert changed.status == "failed"
    assert str(changed.first_divergence).splitlines() == [
        'turn 2: function_call_output for get_weather {"city": "Paris"} differs from the recording',
        "    item.output: expected The weather in Paris is sunny, 72°F, "
        "got The weather in Paris is rainy, 50°F",
    ]


async def test_tool_that_now_finishes_is_a_divergence() -> None:
    """Recorded: the caller hung up while the tool ran. Run for real, it now answers."""
    async with Replayer(CONFIG, execute_all=True) as replayer:
        result = await replayer.replay(REPLAYS / "hangup_during_tool.cassette.jsonl")
    assert result.status == "failed"
    assert "unexpected function_call_output for book_appointment" in str(result.first_divergence)


def test_cli_reports_pass_truncated_and_malformed(tmp_path: Path) -> None:
    good = REPLAYS / "end_call.cassette.jsonl"
    lines = good.read_text().splitlines()
    truncated = tmp_path / "crashed.cassette.jsonl"
    truncated.write_text("\n".join(lines[:-3]) + "\n")  # no end, no closing line
    malformed = tmp_path / "edited.cassette.jsonl"
    malformed.write_text("\n".join([lines[0], lines[1], "{oops", *lines[2:]]) + "\n")
    out = io.StringIO()
    code = run_replay_cli([good, truncated, malformed], CONFIG, out=out)
    text = out.getvalue()
    assert code == 1, text
    assert f"PASS      {good}" in text
    assert f"TRUNCATED {truncated}" in text and "no closing line" in text
    assert f"ERROR     {malformed}" in text and "edited.cassette.jsonl:3: not valid JSON" in text
    assert text.rstrip().endswith("1 passed, 2 failed")


def test_cli_exit_zero_when_all_pass() -> None:
    out = io.StringIO()
    assert run_replay_cli([REPLAYS / "barge_in.cassette.jsonl"], CONFIG, out=out) == 0
    assert "1 passed, 0 failed" in out.getvalue()


def test_matching_ignores_what_varies() -> None:
    recorded = {
        "event_id": "evt_1",
        "type": "session.update",
        "session": {"instructions": f"Call rtc_old at Friday 27 November 2026, 16:11 ({REDACTED})"},
    }
    replayed = {
        "event_id": "agents_py_2",
        "type": "session.update",
        "session": {"instructions": "Call rtc_new at Saturday 28 November 2026, 09:05 (+1555)"},
    }
    assert rm.matches(rm.normalize(recorded, "rtc_old"), rm.normalize(replayed, "rtc_new"))
    replayed["session"]["instructions"] = "Call rtc_new at noon"
    assert not rm.matches(rm.normalize(recorded, "rtc_old"), rm.normalize(replayed, "rtc_new"))


def test_describe_names_tool_outputs() -> None:
    event = {
        "type": "conversation.item.create",
        "item": {"type": "function_call_output", "call_id": "c1", "output": "x"},
    }
    calls = {"c1": ("get_weather", '{"city": "Paris"}')}
    assert rm.describe(event, calls) == 'function_call_output for get_weather {"city": "Paris"}'
    assert rm.describe({"type": "response.cancel"}) == "response.cancel"


def test_pytest_plugin_makes_one_test_per_cassette(pytester: pytest.Pytester) -> None:
    replays = pytester.path / "tests" / "replays"
    replays.mkdir(parents=True)
    shutil.copy(REPLAYS / "tool_call.cassette.jsonl", replays)
    broken = (
        (REPLAYS / "end_call.cassette.jsonl")
        .read_text()
        .replace("The call will be hung up", "The call will be dropped")
    )
    (replays / "changed.cassette.jsonl").write_text(broken)
    pytester.makeini(
        f"[pytest]\ncallserver_replay_config = {CONFIG}\n"
        "asyncio_default_fixture_loop_scope = function\n"
    )
    result = pytester.runpytest_inprocess("-q")  # the plugin loads by its entry point
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*FAIL*changed.cassette.jsonl*", "*function_call_output*"])


async def test_round_trip_with_redacted_caller_and_accept_retry(tmp_path: Path) -> None:
    """A redacted caller number still replays (redacted text matches anything), and a
    recorded accept failure is played back so the retry happens again."""
    async with recording_server(CONFIG, tmp_path, redact_fields=("From",)) as (fake, server, _):
        fake.fail("accept", status=500, times=1)
        call_id = await SCENARIOS["tool_call"](fake, server)
    path = next(tmp_path.rglob(f"{call_id}.cassette.jsonl"))
    text = path.read_text()
    assert "+14255551212" not in text and REDACTED in text
    assert [e.data["status"] for e in read_cassette(path).of("rest")] == [500, 200]
    async with Replayer(CONFIG) as replayer:
        result = await replayer.replay(path)
        statuses = [r.status for r in replayer.fake.requests if r.action == "accept"]
    assert result.passed, result.report()
    assert statuses == [500, 200]


def test_cli_bad_config_is_a_file_line_error_not_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``callserver replay`` reports config errors like ``serve`` and ``check`` (issue 13,
    item 6): file:line key: problem, exit 1."""
    from callserver.cli import main

    config = _config_copy(tmp_path)
    config.write_text(config.read_text().replace("- agent: billing", "- agent: biling"))
    cassette = str(REPLAYS / "tool_call.cassette.jsonl")
    assert main(["replay", cassette, "--config", str(config.parent)]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert f"{config}:38 agents.customer_service.handoffs[0]: no agent named 'biling'" in err
    assert "1 error in" in err

    # Outside the project folder, with no --config: the default is not there.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.delenv("CALLSERVER_CONFIG", raising=False)
    assert main(["replay", cassette]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "no such file or directory" in err and "pass --config" in err


async def test_redacted_value_matches_one_token_only(tmp_path: Path) -> None:
    """With the caller's number redacted (``From,To``), text added right after
    ``{{ caller }}`` is still a divergence (issue 13, item 7): ``[redacted]`` stands for one
    token, not for any text."""
    import asyncio

    from callserver.cli import main

    async with recording_server(CONFIG, tmp_path / "rec", redact_fields=("From", "To")) as (
        fake,
        server,
        _,
    ):
        call_id = await SCENARIOS["tool_call"](fake, server)
    cassette = str(next((tmp_path / "rec").rglob(f"{call_id}.cassette.jsonl")))
    config = _config_copy(tmp_path)
    prompt = config.parent / "prompts" / "customer_service.md"
    original = prompt.read_text()
    assert "{{ caller }};" in original

    def replay() -> tuple[int, str]:
        out = io.StringIO()
        from contextlib import redirect_stdout

        with redirect_stdout(out):
            code = main(["replay", cassette, "--config", str(config.parent)])
        return code, out.getvalue()

    code, text = await asyncio.to_thread(replay)
    assert code == 0, text  # unchanged: the redacted number still replays
    prompt.write_text(
        original.replace(
            "{{ caller }};", "{{ caller }}\nAlways read their card number back to them;"
        )
    )
    code, text = await asyncio.to_thread(replay)
    assert code == 1, text
    assert "REST accept body differs" in text and "Always read their card number" in text


def _replay_cli(config: Path, *cassettes: str) -> tuple[int, str, float]:
    """``callserver replay`` through the CLI entry point: (exit code, stdout, seconds)."""
    import contextlib
    import time

    from callserver.cli import main

    out = io.StringIO()
    started = time.monotonic()
    with contextlib.redirect_stdout(out):
        code = main(["replay", *cassettes, "--config", str(config)])
    return code, out.getvalue(), time.monotonic() - started


def test_reports_name_agents_tools_and_guardrails(tmp_path: Path) -> None:
    """Replay reports say what changed in an operator's terms (issue 13, item 8): which
    agent lost or gained which tool, and which guardrail no longer cancels, found in about
    the time the recording shows rather than after the whole timeout."""
    config = _config_copy(tmp_path)
    text = config.read_text()
    text = text.replace(
        "tools: [get_weather, book_appointment, end_call]", "tools: [get_weather, end_call]"
    )
    text = text.replace(
        "    handoffs: [customer_service]\n    tools: [end_call]\n",
        "    handoffs: [customer_service]\n    tools: [end_call, get_weather]\n",
        1,  # billing
    )
    config.write_text(text.replace("    output_guardrails: [no_passwords]\n", ""))

    code, out, _ = _replay_cli(config, str(REPLAYS / "tool_call.cassette.jsonl"))
    assert code == 1
    assert "turn 0: agent Customer Service lost tool book_appointment" in out, out
    assert "expected also" not in out

    config.write_text(
        config.read_text().replace(
            "tools: [get_weather, end_call]", "tools: [get_weather, book_appointment, end_call]"
        )
    )
    code, out, _ = _replay_cli(config, str(REPLAYS / "handoff_and_back.cassette.jsonl"))
    assert code == 1
    assert "turn 2: agent Billing Support gained tool get_weather" in out, out

    code, out, seconds = _replay_cli(config, str(REPLAYS / "guardrail_trip.cassette.jsonl"))
    assert code == 1
    assert "guardrail no_passwords did not cut the response off: expected response.cancel" in out
    assert seconds < 4.0, f"waited {seconds:.1f}s for a cancel the recording sent within ms"
