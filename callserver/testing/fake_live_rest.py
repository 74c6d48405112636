"""The REST of the fake GPT-Live service: ``accept`` / ``reject`` / ``refer`` / ``hangup``
on ``/v1/live/sessions/{session_id}/...``, and ``GET .../content`` (the recording).

Mounted by :class:`~callserver.testing.fake_live.FakeLive`. The request flow (record,
precheck, answer) is the Realtime fake's (:mod:`~callserver.testing.fake_rest`), so both
APIs refuse alike; what differs is here: the decision state machine shared with a dual
call (the first accept or reject, on either API, wins; later ones get
``decision_already_made``) and bodies validated strictly against the ``openai`` package's
Live types.
"""

from __future__ import annotations

import io
import time
import wave
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from callserver.testing import live_events as le
from callserver.testing.fake_calls import RecordedRequest, error_body
from callserver.testing.fake_live_session import FakeLiveSession, Result, session_not_found
from callserver.testing.fake_rest import (
    action_endpoint,
    authorized,
    bad_json_error,
    decided,
    no_key_error,
)
from callserver.testing.live_schemas import accept_errors, refer_errors, reject_errors

if TYPE_CHECKING:
    from callserver.testing.fake_live import FakeLive

__all__ = ["LiveRest", "stereo_wav"]

_BODY_CHECKS = {"accept": accept_errors, "reject": reject_errors, "refer": refer_errors}


class LiveRest:
    """The Live REST endpoints over ``live``'s sessions; see the module docstring."""

    def __init__(self, live: FakeLive) -> None:
        self._live = live

    async def endpoint(self, request: Request) -> Response:
        """``POST /v1/live/sessions/{session_id}/{action}``."""
        live = self._live
        return await action_endpoint(
            request,
            id_param="session_id",
            requests=live.control.requests,
            handle=self._handle,
            notify=live.changes.notify,
        )

    async def _handle(self, record: RecordedRequest, body: Any, bad_json: bool) -> Result:
        live = self._live
        if (refusal := await live.control.precheck(record)) is not None:
            return refusal
        action, session_id = record.action, str(record.call_id)
        session = live.lookup(session_id)
        if session is not None and action in ("accept", "reject") and session.decision.made:
            return decided()  # whatever became of the call since: its decision was made
        if session is None or (session.state == "ended" and action != "hangup"):
            return session_not_found(session_id)
        if bad_json:
            return 400, bad_json_error()
        check = _BODY_CHECKS.get(action)
        errors = check(body) if check else ([] if body is None else ["hangup takes no body"])
        if errors:
            record.errors = errors
            live.control.rest_schema_errors.append((session_id, action, errors))
            code = "unknown_parameter" if "Additional properties" in errors[0] else "invalid_value"
            return 400, error_body("Invalid request: " + "; ".join(errors), code=code)
        return await getattr(self, f"_do_{action}")(session, body)

    async def _do_accept(self, session: FakeLiveSession, body: dict[str, Any]) -> Result:
        if session.state != "ringing" or not session.decision.take("live:accept"):
            return decided()
        session.state, session.config = "accepted", dict(body["session"])
        session.accepted_at = time.monotonic()
        if self._live.auto_reply:
            await self._live.broadcast(session, le.session_started(session.resource()))
        return 200, None

    async def _do_reject(self, session: FakeLiveSession, body: dict[str, Any]) -> Result:
        if session.state != "ringing" or not session.decision.take("live:reject"):
            return decided()
        session.state, session.ended_by = "ended", "reject"
        session.reject_status = int(body["status_code"])
        await self._live.changes.notify()
        return 200, None

    async def _do_refer(self, session: FakeLiveSession, body: dict[str, Any]) -> Result:
        live = self._live
        if session.state != "accepted":
            return 400, error_body(f"Session {session.session_id} is not active")
        session.refer_target = body["target_uri"]
        if live.end_on_refer:
            session.ended_by = "refer"
            live.in_background(
                live.close_session(
                    session.session_id, live.refer_close_reason, after=live.refer_end_delay
                )
            )
        return 200, None

    async def _do_hangup(self, session: FakeLiveSession, body: Any) -> Result:
        del body
        if session.state == "ended":
            return session_not_found(session.session_id)
        session.ended_by = "hangup"
        if session.state == "ringing":
            session.state = "ended"
            return 200, None
        # accepted, or an outbound session still dialing: the session closes
        self._live.in_background(self._live.close_session(session.session_id, "close_requested"))
        return 200, None

    async def content(self, request: Request) -> Response:
        """The stored session's recording: binary stereo WAV (left caller, right agent)."""
        live = self._live
        session_id = request.path_params["session_id"]
        live.control.requests.append(
            RecordedRequest(
                "GET", request.url.path, session_id, "content", dict(request.headers), None
            )
        )
        if not authorized(request.headers):
            return JSONResponse(no_key_error(), status_code=401)
        session = live.sessions.get(session_id)
        if session is None:
            return JSONResponse(session_not_found(session_id)[1], status_code=404)
        if not (session.config or {}).get("store"):
            return JSONResponse(error_body("Session was not stored (store: true)"), status_code=400)
        ready = session.closed_at is not None and (
            time.monotonic() - session.closed_at >= live.recording_delay_s
        )
        if not ready:
            return JSONResponse(error_body("Session is still being finalized"), status_code=409)
        return Response(stereo_wav(session.seconds), media_type="audio/wav")


def stereo_wav(seconds: float, rate: int = 24_000) -> bytes:
    """A silent stereo PCM16 WAV (left = caller, right = agent), at most a second long."""
    frames = int(rate * min(max(seconds, 0.1), 1.0))
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(2)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(b"\x00\x00\x00\x00" * frames)
    return buffer.getvalue()
