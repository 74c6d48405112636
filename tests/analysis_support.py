"""Helpers for the post-call analysis tests: graph files and settings."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from callserver.testing.postcall_receiver import PostCallReceiver

POSTCALL_SECRET = "whsec_" + base64.b64encode(b"analysis-test-secret-32-bytes!!!").decode()

GRAPH = """\
name: {name}
start: desk
agents:
  desk:
    instructions: You answer calls for a test business.
    tools: [end_call]
{extra}"""

ANALYSIS = """\
analysis:
  model: gpt-4.1-mini
  summary: true
  fields:
    reason: {{type: string, enum: [billing, other]}}
    callback_number: {{type: string, required: false}}
  success: The caller's question was answered.
  timeout: {timeout}
  max_attempts: {attempts}
"""


def analysis_block(*, timeout: str = "5s", attempts: int = 3) -> str:
    """An ``analysis:`` block asking for a summary, two fields and a verdict."""
    return ANALYSIS.format(timeout=timeout, attempts=attempts)


def write_graph(
    tmp_path: Path,
    *,
    name: str = "desk",
    analysis: bool = True,
    timeout: str = "5s",
    attempts: int = 3,
    extra: str = "",
) -> Path:
    """A one-agent graph file, with an ``analysis:`` block unless told otherwise."""
    body = (analysis_block(timeout=timeout, attempts=attempts) if analysis else "") + extra
    path = tmp_path / f"{name}.yaml"
    path.write_text(GRAPH.format(name=name, extra=body), encoding="utf-8")
    return path


def postcall_settings(receiver: PostCallReceiver, tmp_path: Path) -> dict[str, Any]:
    """Settings overrides for callserver with post-call events (and so analysis) on."""
    return {
        "postcall_urls": (receiver.url,),
        "postcall_secret": POSTCALL_SECRET,
        "outbox_path": tmp_path / "outbox.sqlite3",
    }
