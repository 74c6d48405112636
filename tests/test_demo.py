"""The offline demos (`callserver demo`, `callserver demo --live`) play their calls through."""

from __future__ import annotations

import pytest

from callserver.demo import run_demo
from callserver.demo_live import run_live_demo
from tests.conftest import ROOT


async def test_realtime_demo(capsys: pytest.CaptureFixture[str]) -> None:
    assert await run_demo(ROOT / "config" / "agents.yaml") == 0
    out = capsys.readouterr().out
    assert "webhook realtime.call.incoming" in out and "call ended: caller_hangup" in out
    assert "call.analyzed completed" in out  # the front desk's analysis: block
    assert 'success {"achieved": true' in out


async def test_live_demo(capsys: pytest.CaptureFixture[str]) -> None:
    assert await run_live_demo(ROOT / "config" / "frontdesk_live.yaml") == 0
    out = capsys.readouterr().out
    assert "webhook live.transport.incoming" in out
    assert "session.update delegation: You specialize in billing" in out
    assert "call ended: caller_hangup (engine live)" in out
    assert "every message valid" in out
