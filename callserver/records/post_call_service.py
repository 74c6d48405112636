"""After the call: the end listener that turns each finished call into its post-call events,
and the objects behind it (outbox, analysis queue, Responses client), built and closed
together so the app only starts and stops one thing.

Per call, synchronously in the end path (cheap, never blocking): pick the graph the call ran
on, snapshot the ``call.ended`` event. Then, in a worker thread: redact the transcript, build
the analysis request if the graph has ``analysis:`` and the call was answered, and commit
both in one transaction. Nothing here delays the end of the call, its slot or its metrics.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from callserver.calls.records import CallRecord
from callserver.graph.analysis_models import PostCallPlan, RedactionRule
from callserver.graph.spec import Config, GraphSpec
from callserver.metrics import Metrics
from callserver.records.analysis import AnalysisJob
from callserver.records.analysis_queue import AnalysisQueue, PostCallEvents
from callserver.records.outbox import Outbox
from callserver.records.pii import kinds, transcript_redactor
from callserver.records.post_call import build_call_ended_event, event_webhook_id
from callserver.records.redaction import settings_secrets
from callserver.records.responses_client import ResponsesClient
from callserver.settings import Settings

log = logging.getLogger(__name__)


class Configs(Protocol):
    """Where graphs are looked up (a :class:`~callserver.config_holder.ConfigHolder`)."""

    @property
    def current(self) -> Config: ...

    def by_hash(self, config_hash: str | None) -> Config | None: ...


def prepare_events(
    event: dict[str, Any],
    *,
    plan: PostCallPlan,
    rules: Iterable[RedactionRule],
    secrets: Iterable[str],
    analyse: bool,
) -> PostCallEvents:
    """The call's ``call.ended`` event with its transcript redacted, and its analysis job
    (built from that redacted data) when ``analyse``. Pure CPU work: run it off the loop."""
    rules = list(dict.fromkeys(rules))
    data = event["data"]
    data["transcript"] = transcript_redactor(rules, secrets).redact(data["transcript"])
    data["transcript_redactions"] = sorted({rule.kind for rule in rules})
    webhook_id = event_webhook_id(data["call_id"])
    job = None
    if analyse and plan.analysis is not None:
        job = AnalysisJob.create(data, plan.analysis, webhook_id)
    data["analysis"] = {"status": "pending", "webhook_id": job.webhook_id} if job else None
    return PostCallEvents(event, webhook_id, job)


class PostCallListener:
    """An end listener (:attr:`CallManager.end_listeners`) that hands each finished call's
    events to the analysis queue, which stores them durably."""

    def __init__(
        self,
        queue: AnalysisQueue,
        configs: Configs,
        *,
        redact_numbers: bool | Callable[[], bool],
        redact_transcript: Iterable[str] = (),
        secrets: Iterable[str] = (),
    ) -> None:
        self._queue = queue
        self._configs = configs
        self._redact_numbers = redact_numbers
        self._rules = kinds(redact_transcript)
        self._secrets = tuple(secrets)

    def graph_of(self, record: CallRecord) -> GraphSpec | None:
        """The graph the call started with (a reload during the call does not count)."""
        if record.graph is None:
            return None
        config = self._configs.by_hash(record.config_hash)
        if config is None:
            log.warning(
                "the call's config is no longer known; post-call uses the current one",
                extra={"call_id": record.call_id},
            )
            config = self._configs.current
        return config.graphs.get(record.graph)

    def __call__(self, record: CallRecord) -> None:
        redact = self._redact_numbers() if callable(self._redact_numbers) else self._redact_numbers
        graph = self.graph_of(record)
        plan = graph.post_call if graph is not None else PostCallPlan()
        event = build_call_ended_event(record, redact_numbers=redact)
        secrets = [*self._secrets, *((record.caller or "", record.dialed or "") if redact else ())]
        rules = [*self._rules, *plan.redact]
        answered = record.accepted_mono is not None  # nothing was said on an unanswered call

        def prepare() -> PostCallEvents:
            return prepare_events(event, plan=plan, rules=rules, secrets=secrets, analyse=answered)

        self._queue.submit(prepare, record=record)


@dataclasses.dataclass(slots=True)
class PostCallService:
    """The outbox and the analysis queue of one app, closed in the right order."""

    outbox: Outbox
    analysis: AnalysisQueue

    async def aclose(self) -> None:
        await self.analysis.aclose()  # its last events go into the outbox
        await self.outbox.aclose()


async def start_post_call(
    settings: Settings, metrics: Metrics, configs: Configs, listeners: list[Any]
) -> PostCallService | None:
    """Start the outbox and the analysis queue and register the end listener, when post-call
    receivers are configured; None (with a warning if a graph asks for analysis) otherwise."""
    if not settings.postcall_urls:
        asking = sorted(g.name for g in configs.current.graphs.values() if g.post_call.analysis)
        if asking:
            log.warning(
                "graphs %s have an analysis: block but CALLSERVER_POSTCALL_URLS is not set: "
                "no analysis runs (results are delivered as post-call events)",
                asking,
            )
        return None
    if settings.postcall_secret is None:
        raise RuntimeError("CALLSERVER_POSTCALL_URLS is set but CALLSERVER_POSTCALL_SECRET is not")
    outbox = Outbox(
        settings.outbox_path,
        list(settings.postcall_urls),
        settings.postcall_secret.get_secret_value(),
        on_result=metrics.postcall_delivery,
    )
    await outbox.start()
    secrets = settings_secrets(settings)
    client = ResponsesClient(
        settings.openai_base_url,
        settings.openai_api_key.get_secret_value(),
        on_retry=metrics.analysis_retry,
        secrets=secrets,
    )
    queue = AnalysisQueue(
        outbox, client, metrics=metrics, concurrency=settings.analysis_concurrency
    )
    try:
        await queue.start()
    except BaseException:
        await client.aclose()
        await outbox.aclose()
        raise
    listeners.append(
        PostCallListener(
            queue,
            configs,
            redact_numbers=settings.redact_numbers,
            redact_transcript=settings.redact_transcript,
            secrets=secrets,
        )
    )
    return PostCallService(outbox, queue)
