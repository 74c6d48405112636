"""Cassettes: the writer (off-loop, crash-tolerant, error-counting), redaction, the reader."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from pydantic import SecretStr

from callserver.graph import load_config
from callserver.records.cassette import (
    CassetteRecorderFactory,
    make_recorder_factory,
    sampled,
)
from callserver.records.cassette_reader import CassetteError, read_cassette
from callserver.records.recorder import RecordingStart
from callserver.records.redaction import REDACTED, Redactor, config_secrets, settings_secrets

ROOT = Path(__file__).resolve().parent.parent


def _start(call_id: str = "rtc_abc123", t0: float | None = None) -> RecordingStart:
    return RecordingStart(
        call_id=call_id,
        graph="frontdesk",
        config_hash="cafe",
        t0=time.monotonic() if t0 is None else t0,
    )


def _factory(tmp_path: Path, **kwargs: Any) -> CassetteRecorderFactory:
    return CassetteRecorderFactory(directory=tmp_path, **kwargs)


async def _wait_lines(path: Path, count: int) -> list[str]:
    """Lines on disk once at least ``count`` have been flushed (the writer is async)."""
    for _ in range(200):
        if path.exists():
            lines = path.read_text().splitlines()
            if len(lines) >= count:
                return lines
        await asyncio.sleep(0.01)
    raise AssertionError(f"{path} never reached {count} lines")


# ---- writer ----------------------------------------------------------------------------------


async def test_round_trip_header_events_footer(tmp_path: Path) -> None:
    factory = _factory(tmp_path)
    recorder = factory(_start(t0=time.monotonic() - 1.0))
    assert recorder is not None
    recorder.record("webhook", {"headers": {"webhook-id": "wh_1"}, "body": {"id": "evt"}})
    recorder.record("ws_out", {"event": {"type": "session.update"}})
    recorder.record("ws_in", {"event": {"type": "session.created"}})
    recorder.record("end", {"reason": "caller_hangup", "state": "ended"})
    await recorder.close(complete=True)
    factory.stop()

    cassette = read_cassette(recorder.path)
    assert recorder.path.name == "rtc_abc123.cassette.jsonl"
    header = cassette.header
    assert header["format"] == "callserver-cassette" and header["version"] == 1
    assert header["graph"] == "frontdesk" and header["config_hash"] == "cafe"
    assert header["call_id"] == "rtc_abc123" and header["callserver_version"]
    assert header["started_at"].endswith("+00:00")
    assert [e.kind for e in cassette.entries] == ["webhook", "ws_out", "ws_in", "end"]
    assert all(e.t >= 1.0 for e in cassette.entries)  # offsets from t0, monotonic
    assert cassette.entries[1].data == {"event": {"type": "session.update"}}
    assert cassette.footer is not None and cassette.footer["complete"] is True
    assert not cassette.truncated
    assert factory.stats.lines_written == 6 and factory.stats.write_errors == 0


async def test_record_never_raises_and_ignores_after_close(tmp_path: Path) -> None:
    factory = _factory(tmp_path)
    recorder = factory(_start())
    assert recorder is not None
    recorder.record("tool", {"name": "x", "output": object()})  # not JSON: written as str()
    recorder.record("tool", {"name": "y", "bad": {1, 2}})
    await recorder.close(complete=False)
    recorder.record("ws_in", {"event": {}})  # after close: dropped silently
    await recorder.close(complete=True)  # idempotent
    factory.stop()
    cassette = read_cassette(recorder.path)
    assert [e.data["name"] for e in cassette.entries] == ["x", "y"]
    assert cassette.truncated  # closed with complete=False
    assert "abnormally" in (cassette.truncation_reason() or "")


async def test_unwritable_directory_is_counted_not_raised(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    errors: list[int] = []
    factory = _factory(blocker, on_error=lambda: errors.append(1))
    recorder = factory(_start())
    assert recorder is not None
    recorder.record("ws_in", {"event": {"type": "x"}})
    await recorder.close(complete=True)
    factory.stop()
    assert factory.stats.write_errors == 1 and errors == [1]
    assert factory.stats.lines_dropped == 2  # the event and the footer


class _FullDisk:
    """A file whose writes fail like a full disk after the first one."""

    def __init__(self) -> None:
        self.writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        raise OSError(28, "No space left on device")

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


async def test_full_disk_mid_call_stops_that_cassette_only(tmp_path: Path) -> None:
    factory = _factory(tmp_path)
    broken = factory(_start("rtc_broken"))
    healthy = factory(_start("rtc_healthy"))
    assert broken is not None and healthy is not None
    await _wait_lines(broken.path, 1)
    factory.writer._files[broken._key] = _FullDisk()  # type: ignore[attr-defined]
    for _ in range(3):
        broken.record("ws_in", {"event": {"type": "x"}})
        healthy.record("ws_in", {"event": {"type": "x"}})
    await broken.close(complete=True)
    await healthy.close(complete=True)
    factory.stop()
    assert factory.stats.write_errors == 1
    assert factory.stats.lines_dropped == 4  # the failed line, two more, the footer
    assert len(read_cassette(healthy.path).entries) == 3


async def test_crash_leaves_a_readable_prefix(tmp_path: Path) -> None:
    factory = _factory(tmp_path)
    recorder = factory(_start())
    assert recorder is not None
    for index in range(5):
        recorder.record("ws_in", {"event": {"type": "delta", "n": index}})
    await _wait_lines(recorder.path, 6)  # flushed without any close: what a crash leaves
    cassette = read_cassette(recorder.path)
    assert len(cassette.entries) == 5 and cassette.footer is None
    assert cassette.truncated and "no closing line" in (cassette.truncation_reason() or "")

    with recorder.path.open("a") as handle:  # the process died mid-write
        handle.write('{"kind":"ws_in","t":0.5,"event":{"ty')
    torn = read_cassette(recorder.path)
    assert torn.truncated and torn.torn_last_line and len(torn.entries) == 5
    factory.stop()


async def test_record_does_not_block_the_loop(tmp_path: Path) -> None:
    factory = _factory(tmp_path)
    recorder = factory(_start())
    assert recorder is not None
    event = {"event": {"type": "response.output_audio_transcript.delta", "delta": "x" * 200}}
    started = time.perf_counter()
    for _ in range(2000):
        recorder.record("ws_in", event)
    per_event = (time.perf_counter() - started) / 2000
    await recorder.close(complete=True)
    factory.stop()
    assert per_event < 0.001, per_event
    assert len(read_cassette(recorder.path).entries) == 2000


# ---- sampling and settings -------------------------------------------------------------------


def test_sampling_is_deterministic_per_call() -> None:
    ids = [f"rtc_{i:032x}" for i in range(2000)]
    assert all(sampled(i, 1.0) for i in ids) and not any(sampled(i, 0.0) for i in ids)
    picked = [i for i in ids if sampled(i, 0.25)]
    assert 400 < len(picked) < 600
    assert picked == [i for i in ids if sampled(i, 0.25)]


def test_factory_from_settings(tmp_path: Path) -> None:
    assert make_recorder_factory(SimpleNamespace()) is None  # recording is off by default
    assert make_recorder_factory(SimpleNamespace(recording_mode="off")) is None
    settings = SimpleNamespace(
        recording_mode="sampled",
        recording_sample_rate=0.0,
        recording_dir=tmp_path,
        recording_redact_fields=("From", "To"),
        openai_api_key=SecretStr("sk-live-abcdefghijklmnopqrstuvwxyz"),
    )
    factory = make_recorder_factory(settings)
    assert factory is not None and factory.directory == tmp_path
    assert factory(_start()) is None  # sampled out
    with pytest.raises(ValueError, match="recording_mode"):
        make_recorder_factory(SimpleNamespace(recording_mode="sometimes"))
    with pytest.raises(ValueError, match="sample_rate"):
        make_recorder_factory(SimpleNamespace(recording_mode="sampled", recording_sample_rate=2))


# ---- redaction -------------------------------------------------------------------------------


def test_redacts_api_keys_by_value_and_shape() -> None:
    settings = SimpleNamespace(
        openai_api_key=SecretStr("my-plain-key-1234"),
        webhook_secret=SecretStr("whsec_c2VjcmV0c2VjcmV0"),
        twilio_auth_token=None,
        postcall_secret=None,
    )
    redactor = Redactor(secrets=settings_secrets(settings))
    out = redactor.redact(
        {
            "text": "key my-plain-key-1234 and sk-proj-ABCDEFGHIJKLMNOPQRSTUV in a string",
            "nested": [{"note": "signed with whsec_c2VjcmV0c2VjcmV0"}],
            "other": "whsec_QW5vdGhlclNlY3JldA==",
        }
    )
    assert out["text"] == f"key {REDACTED} and {REDACTED} in a string"
    assert out["nested"][0]["note"] == f"signed with {REDACTED}"
    assert out["other"] == REDACTED


def test_redacts_auth_headers_and_signature() -> None:
    redactor = Redactor()
    out = redactor.redact(
        {
            "headers": {
                "Authorization": "Bearer abc.def.ghi",
                "webhook-signature": "v1,xyz",
                "Cookie": "session=1",
                "content-type": "application/json",
            },
            "list": [{"name": "X-Api-Key", "value": "k-123456"}, {"name": "Via", "value": "a"}],
            "free": "sent Authorization: Bearer eyJhbGciOiJIUzI1NiJ9 to them",
        }
    )
    assert out["headers"]["Authorization"] == REDACTED
    assert out["headers"]["webhook-signature"] == REDACTED
    assert out["headers"]["Cookie"] == REDACTED
    assert out["headers"]["content-type"] == "application/json"
    assert out["list"] == [
        {"name": "X-Api-Key", "value": REDACTED},
        {"name": "Via", "value": "a"},
    ]
    assert "eyJhbGciOiJIUzI1NiJ9" not in out["free"]


async def test_webhook_signature_never_recorded(tmp_path: Path) -> None:
    factory = _factory(tmp_path)
    recorder = factory(_start())
    assert recorder is not None
    recorder.record("webhook", {"headers": {"Webhook-Signature": "v1,sig"}, "body": {}})
    await recorder.close(complete=True)
    factory.stop()
    assert "v1,sig" not in recorder.path.read_text()
    assert read_cassette(recorder.path).entries[0].data["headers"] == {}


def test_http_tool_secrets_from_config() -> None:
    config = load_config(ROOT / "config" / "orders.yaml")
    secrets = config_secrets(config)
    assert "demo-token" in secrets and "demo-signing-secret" in secrets
    redactor = Redactor(secrets=secrets)
    out = redactor.redact({"output": "backend echoed demo-token and demo-signing-secret"})
    assert out["output"] == f"backend echoed {REDACTED} and {REDACTED}"


async def test_factory_picks_up_http_tool_secrets(tmp_path: Path) -> None:
    holder = SimpleNamespace(current=load_config(ROOT / "config" / "orders.yaml"))
    factory = _factory(tmp_path, config=holder)
    recorder = factory(_start())
    assert recorder is not None
    recorder.record("tool", {"name": "order_status", "output": "token demo-token leaked"})
    await recorder.close(complete=True)
    factory.stop()
    assert "demo-token" not in recorder.path.read_text()


def test_extra_fields_hide_caller_numbers_everywhere() -> None:
    redactor = Redactor(extra_fields=("From", "caller"))
    webhook = redactor.redact(
        {
            "data": {
                "sip_headers": [
                    {"name": "From", "value": "sip:+14255551212@sip.example.com"},
                    {"name": "To", "value": "sip:+18005551212@sip.example.com"},
                ]
            }
        }
    )
    headers = webhook["data"]["sip_headers"]
    assert headers[0]["value"] == REDACTED
    assert headers[1]["value"] == "sip:+18005551212@sip.example.com"
    # Learned: the same number quoted later (instructions, tool output) is hidden too.
    later = redactor.redact({"instructions": "The caller's number is +14255551212."})
    assert later["instructions"] == f"The caller's number is {REDACTED}."
    assert redactor.redact({"caller": "+15550001111"})["caller"] == REDACTED


# ---- reader errors ---------------------------------------------------------------------------

HEADER = json.dumps({"kind": "header", "format": "callserver-cassette", "version": 1})


@pytest.mark.parametrize(
    ("lines", "line_no", "message"),
    [
        ([HEADER, '{"kind":"ws_in","t":0.1,"event":{}}', "{not json", "{}"], 3, "not valid JSON"),
        (['{"format":"something-else"}'], 1, "not a cassette header"),
        ([HEADER.replace('"version": 1', '"version": 9')], 1, "version 9"),
        ([HEADER, '{"kind":"bogus","t":0}'], 2, "unknown or missing kind"),
        ([HEADER, '{"kind":"ws_in","event":{}}'], 2, "numeric 't'"),
        ([HEADER, '{"kind":"ws_out","t":1}'], 2, "without 'event'"),
        ([HEADER, "[1, 2]"], 2, "JSON object"),
        ([HEADER, '{"kind":"closed","t":1,"complete":true}', '{"kind":"end","t":1}'], 3, "after"),
    ],
)
def test_malformed_lines_name_their_line(
    tmp_path: Path, lines: list[str], line_no: int, message: str
) -> None:
    path = tmp_path / "bad.cassette.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(CassetteError, match=message) as info:
        read_cassette(path)
    assert info.value.line == line_no
    assert f"bad.cassette.jsonl:{line_no}:" in str(info.value)


def test_empty_or_missing_file(tmp_path: Path) -> None:
    empty = tmp_path / "empty.cassette.jsonl"
    empty.write_text("")
    with pytest.raises(CassetteError, match="empty"):
        read_cassette(empty)
    with pytest.raises(CassetteError, match="cannot read"):
        read_cassette(tmp_path / "missing.cassette.jsonl")


async def test_cassettes_are_private_files(tmp_path: Path) -> None:
    factory = _factory(tmp_path)
    recorder = factory(_start())
    assert recorder is not None
    await recorder.close(complete=True)
    await factory.aclose()
    assert recorder.path.stat().st_mode & 0o777 == 0o600
