"""The baseline of bench/sidebyside.py: a minimal SIP server written the way the agents
SDK's ``examples/realtime/twilio_sip`` server works, which is what a user would run
instead of callserver. Our own code, for the bench only (not shipped in the package).

The example's shape, kept on purpose so the comparison is fair:

- one ``AsyncOpenAI`` client (default ``max_retries``, as the example) with the webhook
  secret; the webhook is verified with ``client.webhooks.unwrap``;
- ``realtime.call.incoming``: accept in the handler (model, instructions and the starting
  agent's tools), then a background task per call attaches ``RealtimeRunner`` with
  ``OpenAIRealtimeSIPModel``, asks for a greeting and consumes the session's events;
- a triage agent with one function tool that hands off to two specialists and back;
- uvicorn with its defaults (access log on), as ``uvicorn server:app`` runs it.

starlette instead of FastAPI (FastAPI is not a dependency of callserver). The base URL and
the websocket URL come from the environment so both point at the local fake OpenAI::

    OPENAI_API_KEY=sk-x OPENAI_WEBHOOK_SECRET=whsec_... OPENAI_BASE_URL=http://h:p/v1 \
    SIP_EXAMPLE_WS_URL=ws://h:p/v1/realtime python bench/sip_example.py --port 8000
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path
from typing import Any

import uvicorn
import websockets
from agents import function_tool
from agents.realtime import RealtimeAgent, realtime_handoff
from agents.realtime.config import RealtimeSessionModelSettings
from agents.realtime.items import AssistantMessageItem, AssistantText, UserMessageItem
from agents.realtime.model_inputs import RealtimeModelSendRawMessage
from agents.realtime.openai_realtime import OpenAIRealtimeSIPModel
from agents.realtime.runner import RealtimeRunner
from openai import APIStatusError, AsyncOpenAI, InvalidWebhookSignatureError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

sys.path.insert(0, str(Path(__file__).resolve().parent))
from procstat import raise_nofile

logging.basicConfig(level=logging.INFO)
logger = logging.getLogger("sip_example")

GREETING = "Thanks for calling Example Corp. How can I help?"
MODEL = "gpt-realtime"


@function_tool
def lookup_order(order_id: str) -> str:
    """Look up the status of an order.

    Args:
        order_id: The order number the caller gives.
    """
    return f"Order {order_id} shipped yesterday."


@function_tool
def add_note(customer_id: str, note: str) -> str:
    """Add a short note to a customer's record.

    Args:
        customer_id: The customer's id.
        note: What to record.
    """
    return f"Noted for {customer_id}."


def build_agents() -> RealtimeAgent:
    """A triage agent and two specialists, like the example's agents.py (our wording)."""
    orders = RealtimeAgent(
        name="Orders",
        handoff_description="Order status and deliveries.",
        instructions="You answer questions about orders. Use lookup_order. Keep it short.",
        tools=[lookup_order],
    )
    records = RealtimeAgent(
        name="Records",
        handoff_description="Notes on a customer's record.",
        instructions="You add notes to customer records with add_note, then confirm.",
        tools=[add_note],
    )
    triage = RealtimeAgent(
        name="Triage",
        handoff_description="Greets callers and routes them.",
        instructions=(
            f"Start by saying: '{GREETING}'. Find out what the caller needs, answer order "
            "questions with lookup_order, and hand off to a specialist when it fits."
        ),
        tools=[lookup_order],
        handoffs=[
            realtime_handoff(orders, tool_name_override="transfer_to_orders"),
            realtime_handoff(records, tool_name_override="transfer_to_records"),
        ],
    )
    orders.handoffs.append(realtime_handoff(triage, tool_name_override="transfer_to_triage"))
    records.handoffs.append(realtime_handoff(triage, tool_name_override="transfer_to_triage"))
    return triage


def _env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise RuntimeError(f"Missing environment variable: {name}")
    return value


client = AsyncOpenAI(
    api_key=_env("OPENAI_API_KEY"),
    webhook_secret=_env("OPENAI_WEBHOOK_SECRET"),
    base_url=os.environ.get("OPENAI_BASE_URL"),
)
WS_URL = os.environ.get("SIP_EXAMPLE_WS_URL", "wss://api.openai.com/v1/realtime")
agent = build_agents()
# The accept carries the starting agent's function tools (built once, not per call).
ACCEPT_TOOLS: list[dict[str, Any]] = [
    {
        "type": "function",
        "name": tool.name,
        "description": tool.description,
        "parameters": tool.params_json_schema,
    }
    for tool in agent.tools
    if hasattr(tool, "params_json_schema")
]
active_call_tasks: dict[str, asyncio.Task[None]] = {}


async def accept_call(call_id: str) -> bool:
    """Accept with a model, instructions and tools; False if the call is already gone."""
    instructions = agent.instructions if isinstance(agent.instructions, str) else ""
    try:
        await client.realtime.calls.accept(
            call_id,
            type="realtime",
            model=MODEL,
            instructions=instructions,
            tools=ACCEPT_TOOLS,  # type: ignore[arg-type]
        )
    except APIStatusError as exc:
        if exc.status_code == 404:
            logger.warning("Call %s is gone (404 on accept)", call_id)
            return False
        logger.error("Failed to accept call %s: %s", call_id, exc.status_code)
        raise
    logger.info("Accepted call %s", call_id)
    return True


async def observe_call(call_id: str) -> None:
    """Attach to the call's session, greet, and log what is said until the call ends."""
    runner = RealtimeRunner(agent, model=OpenAIRealtimeSIPModel())
    settings: RealtimeSessionModelSettings = {
        "turn_detection": {"type": "semantic_vad", "interrupt_response": True}
    }
    try:
        session = await runner.run(
            model_config={
                "call_id": call_id,
                "url": f"{WS_URL}?call_id={call_id}",
                "initial_model_settings": settings,
            }
        )
        async with session:
            await session.model.send_event(
                RealtimeModelSendRawMessage(
                    message={
                        "type": "response.create",
                        "other_data": {
                            "response": {"instructions": f"Say exactly '{GREETING}' now."}
                        },
                    }
                )
            )
            async for event in session:
                if event.type == "history_added":
                    item = event.item
                    if isinstance(item, UserMessageItem | AssistantMessageItem):
                        for part in item.content:
                            if isinstance(part, AssistantText) and part.text:
                                logger.info("%s: %s", item.role, part.text)
                elif event.type == "error":
                    logger.error("Realtime session error: %s", event.error)
    except websockets.exceptions.ConnectionClosedError:
        logger.info("Realtime websocket closed for call %s", call_id)
    except Exception:
        logger.exception("Error while observing call %s", call_id)
    finally:
        logger.info("Call %s ended", call_id)
        active_call_tasks.pop(call_id, None)


def track_call_task(call_id: str) -> None:
    """One observer per call, whatever the webhook redeliveries."""
    existing = active_call_tasks.get(call_id)
    if existing is not None and not existing.done():
        logger.info("Call %s already observed; duplicate webhook", call_id)
        return
    active_call_tasks[call_id] = asyncio.create_task(observe_call(call_id))


async def openai_webhook(request: Request) -> Response:
    """Verify, accept in the handler, then observe in the background (the example's order:
    the webhook is answered only once the accept is done)."""
    body = await request.body()
    try:
        event = client.webhooks.unwrap(body, request.headers)
    except InvalidWebhookSignatureError:
        return JSONResponse({"detail": "Invalid webhook signature"}, status_code=400)
    if event.type == "realtime.call.incoming":
        call_id = event.data.call_id
        try:
            accepted = await accept_call(call_id)
        except APIStatusError:
            return JSONResponse({"detail": "Failed to accept call"}, status_code=500)
        if accepted:
            track_call_task(call_id)
    return Response(status_code=200)


async def healthcheck(request: Request) -> Response:
    """The readiness URL the caller side polls before the first call."""
    return JSONResponse({"status": "ok"})


app = Starlette(
    routes=[
        Route("/openai/webhook", openai_webhook, methods=["POST"]),
        Route("/", healthcheck, methods=["GET"]),
    ]
)


def main() -> None:
    """``uvicorn.run`` with its defaults, as ``uvicorn server:app`` runs the example."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    raise_nofile()
    uvicorn.run(app, host=args.host, port=args.port)


if __name__ == "__main__":
    main()
