"""Log lines: JSON, call context on every line of a call, secrets and numbers masked."""

from __future__ import annotations

import asyncio
import io
import json
import logging

from callserver.logs import CallContextFilter, JsonFormatter, TextFormatter, bind_call


def _capture(redact: bool = False, fmt: logging.Formatter | None = None):
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(fmt or JsonFormatter())
    handler.addFilter(CallContextFilter(redact))
    logger = logging.getLogger("callserver.test_logs")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    return logger, stream


async def test_call_context_reaches_child_tasks() -> None:
    logger, stream = _capture()

    async def call_task() -> None:
        bind_call(call_id="rtc_1")
        context = bind_call(graph="frontdesk")
        assert context == {"call_id": "rtc_1", "graph": "frontdesk"}
        await asyncio.create_task(asyncio.sleep(0))

        async def tool() -> None:
            logger.info("from a tool task")

        await asyncio.create_task(tool())

    await asyncio.create_task(call_task())
    logger.info("outside any call")
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["call_id"] == "rtc_1" and first["graph"] == "frontdesk"
    assert "call_id" not in second


def test_secrets_in_extras_are_masked() -> None:
    logger, stream = _capture()
    logger.info("x", extra={"api_key": "sk-123", "webhook_signature": "v1,abc", "ok": 1})
    line = json.loads(stream.getvalue())
    assert line["api_key"] == "[redacted]" and line["webhook_signature"] == "[redacted]"
    assert line["ok"] == 1


def test_numbers_redacted_when_configured() -> None:
    logger, stream = _capture(redact=True, fmt=TextFormatter())
    logger.info("caller %s dialed", "+1 425 555 1212", extra={"caller": "+14255551212"})
    text = stream.getvalue()
    assert "555" not in text and "***1212" in text
    logger2, stream2 = _capture(redact=False)
    logger2.info("caller %s", "+14255551212")
    assert "+14255551212" in stream2.getvalue()
