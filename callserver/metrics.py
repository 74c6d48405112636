"""Prometheus metrics for callserver, one :class:`Metrics` per app.

Each :class:`Metrics` owns its own :class:`~prometheus_client.CollectorRegistry` instead of the
process-wide default one, so several apps (tests, or a reload that rebuilds the app) can live in
one process without "Duplicated timeseries" errors or counts leaking between them.

The code reports what happened through typed methods (``call_ended(record)``,
``tool_finished(...)``) rather than touching collectors, so metric names, labels and buckets
live here only. Label values are bounded: phone numbers and call ids never become labels, and
free-form values (end reasons, tool names, error codes) are mapped to ``"other"`` once they are
unknown or too many, because every distinct label value is a time series kept forever.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, choose_encoder, generate_latest

from callserver.calls.records import CallRecord
from callserver.metric_labels import (
    ANALYSIS_OUTCOMES,
    KNOWN_END_REASONS,
    OTHER,
    OUTBOUND_OUTCOMES,
    BoundedLabel,
    call_outcome,
)

ACCEPT_LATENCY_BUCKETS: tuple[float, ...] = (
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0,
)  # fmt: skip
"""Webhook received -> accept answered: normally tens to hundreds of ms, bad past a few s."""

TOOL_BUCKETS: tuple[float, ...] = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0,
)  # fmt: skip
"""Tools range from in-process lookups (ms) to slow HTTP backends (tens of s)."""

CLEANUP_BUCKETS: tuple[float, ...] = (
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
"""Hangup -> slot freed and record finalised: should be ms; seconds means something hangs."""

GAP_BUCKETS: tuple[float, ...] = (
    0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 7.5, 10.0, 15.0, 30.0,
)  # fmt: skip
"""A reattach normally takes a round trip or two; seconds mean backoff; the budget caps it."""

CALL_DURATION_BUCKETS: tuple[float, ...] = (
    1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0,
)  # fmt: skip

ANALYSIS_BUCKETS: tuple[float, ...] = (
    0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 7.5, 10.0, 15.0, 20.0, 30.0, 60.0, 120.0, 300.0,
)  # fmt: skip
"""A post-call analysis is one text-model request: about 1-10 s, longer with retries."""


class Metrics:
    """Every metric callserver exports, in a registry of its own.

    Call from the event loop or any thread (prometheus-client and the label maps are
    thread-safe). ``graphs``/``tools``/``end_reasons`` seed the known label values; more can
    be added on config reload with the ``allow_*`` methods.
    """

    def __init__(
        self,
        *,
        graphs: Iterable[str] = (),
        tools: Iterable[str] = (),
        end_reasons: Iterable[str] = (),
        max_graphs: int = 50,
        max_tools: int = 200,
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self._graph = BoundedLabel(graphs, open_slots=max_graphs)
        self._tool = BoundedLabel(tools, open_slots=max_tools)
        self._end_reason = BoundedLabel(KNOWN_END_REASONS | set(end_reasons), open_slots=0)
        self._webhook_reason = BoundedLabel((), open_slots=30)
        self._admission_reason = BoundedLabel((), open_slots=20)
        self._action = BoundedLabel(("accept", "reject", "hangup", "refer"), open_slots=10)
        self._tool_outcome = BoundedLabel(("ok", "error", "timeout", "running"), open_slots=10)
        self._error_code = BoundedLabel((), open_slots=50)
        self._active_calls: dict[str, str] = {}
        self._active_lock = threading.Lock()

        self._calls_active = Gauge(
            "callserver_calls_active", "Calls currently in progress.", ["graph"], registry=r
        )
        self._calls_started = Counter(
            "callserver_calls_started_total", "Calls answered, by graph.", ["graph"], registry=r
        )
        self._calls_ended = Counter(
            "callserver_calls_ended_total",
            "Calls finalised, by graph, outcome and end reason.",
            ["graph", "outcome", "end_reason"],
            registry=r,
        )
        self._call_duration = Histogram(
            "callserver_call_duration_seconds",
            "Call duration from webhook to finalisation.",
            ["graph"],
            buckets=CALL_DURATION_BUCKETS,
            registry=r,
        )
        self._cleanup = Histogram(
            "callserver_hangup_cleanup_seconds",
            "Time from the end of a call (hangup) until its slot and record are cleaned up.",
            buckets=CLEANUP_BUCKETS,
            registry=r,
        )
        self._webhook_rejected = Counter(
            "callserver_webhook_rejected_total",
            "Incoming webhooks refused (signature, timestamp, body), by reason.",
            ["reason"],
            registry=r,
        )
        self._duplicates = Counter(
            "callserver_webhook_duplicates_total",
            "Webhook deliveries ignored because they were already handled.",
            registry=r,
        )
        self._engine = BoundedLabel(("realtime", "live"), open_slots=0)
        self._other_engine = Counter(
            "callserver_webhook_other_engine_total",
            "Incoming-call webhooks answered 2xx and left alone because the routed graph runs "
            "on the other engine (one call can announce itself on both APIs), by the "
            "webhook's engine.",
            ["engine"],
            registry=r,
        )
        self._accept_latency = Histogram(
            "callserver_accept_latency_seconds",
            "Time from webhook received to the accept request answered.",
            buckets=ACCEPT_LATENCY_BUCKETS,
            registry=r,
        )
        self._control_retries = Counter(
            "callserver_control_retries_total",
            "Retries of call-control requests to OpenAI, by action.",
            ["action"],
            registry=r,
        )
        self._tool_duration = Histogram(
            "callserver_tool_duration_seconds",
            "Tool call latency, by tool and outcome.",
            ["tool", "outcome"],
            buckets=TOOL_BUCKETS,
            registry=r,
        )
        self._handoffs = Counter(
            "callserver_handoffs_total", "Agent handoffs, by graph.", ["graph"], registry=r
        )
        self._guardrails = Counter(
            "callserver_guardrail_trips_total",
            "Output guardrails tripped, by graph.",
            ["graph"],
            registry=r,
        )
        self._session_errors = Counter(
            "callserver_session_errors_total",
            "Realtime session errors, by error code.",
            ["code"],
            registry=r,
        )
        self._admission_rejected = Counter(
            "callserver_admission_rejected_total",
            "Calls refused by admission control, by reason.",
            ["reason"],
            registry=r,
        )
        self._reattaches = Counter(
            "callserver_reattaches_total",
            "Dropped control connections, by engine and outcome: back (reattached), gone "
            "(the call had ended), given_up (not regained within the budget: hung up).",
            ["engine", "outcome"],
            registry=r,
        )
        self._control_gap = Histogram(
            "callserver_control_gap_seconds",
            "Time a call spent without its control connection, per drop.",
            ["engine"],
            buckets=GAP_BUCKETS,
            registry=r,
        )
        self._moves = Counter(
            "callserver_calls_moved_total",
            "Live calls handed over to or taken over from another instance, by direction.",
            ["direction"],
            registry=r,
        )
        self._draining = Gauge(
            "callserver_draining", "1 while the instance drains and takes no calls.", registry=r
        )
        self._postcall = Counter(
            "callserver_postcall_deliveries_total",
            "Post-call event delivery attempts, by result (delivered, retry, dead).",
            ["result"],
            registry=r,
        )
        self._analysis_outcome = BoundedLabel(ANALYSIS_OUTCOMES, open_slots=0)
        self._analyses = Counter(
            "callserver_analyses_total",
            "Post-call analyses finished, by outcome: completed, or why one failed "
            "(http_error, timeout, network_error, bad_response, refusal, incomplete, "
            "invalid_output, interrupted).",
            ["outcome"],
            registry=r,
        )
        self._analysis_duration = Histogram(
            "callserver_analysis_duration_seconds",
            "Post-call analysis time, first request to validated answer (retries included), "
            "by result (completed or failed).",
            ["result"],
            buckets=ANALYSIS_BUCKETS,
            registry=r,
        )
        self._analysis_retries = Counter(
            "callserver_analysis_retries_total",
            "Responses API requests of post-call analyses that were retried.",
            registry=r,
        )
        self._outbound = Counter(
            "callserver_outbound_calls_total",
            "Outbound calls finalised, by dialer and outcome.",
            ["dialer", "outcome"],
            registry=r,
        )
        self._outbound_label = BoundedLabel((*OUTBOUND_OUTCOMES, "live", "twilio"), open_slots=0)
        self._draining.set(0)

    # ---- label sets that follow the config --------------------------------------------------

    def allow_graphs(self, names: Iterable[str]) -> None:
        self._graph.allow(names)

    def allow_tools(self, names: Iterable[str]) -> None:
        self._tool.allow(names)

    def allow_end_reasons(self, reasons: Iterable[str]) -> None:
        """Make end reasons the config introduces (transfer tool names) real label values."""
        self._end_reason.allow(reasons)

    # ---- webhooks and admission -------------------------------------------------------------

    def webhook_rejected(self, reason: str) -> None:
        self._webhook_rejected.labels(self._webhook_reason(reason)).inc()

    def control_event(self, engine: str, outcome: str, gap_s: float) -> None:
        """A drop of a call's control connection ended: ``back``, ``gone`` or ``given_up``."""
        self._reattaches.labels(self._engine(engine), outcome).inc()
        self._control_gap.labels(self._engine(engine)).observe(gap_s)

    def webhook_other_engine(self, engine: str) -> None:
        self._other_engine.labels(self._engine(engine)).inc()

    def duplicate_delivery(self) -> None:
        self._duplicates.inc()

    def admission_rejected(self, reason: str) -> None:
        self._admission_rejected.labels(self._admission_reason(reason)).inc()

    def set_draining(self, draining: bool) -> None:
        self._draining.set(1 if draining else 0)

    # ---- call lifecycle ---------------------------------------------------------------------

    def accept_latency(self, seconds: float) -> None:
        self._accept_latency.observe(max(seconds, 0.0))

    def control_retry(self, action: str) -> None:
        self._control_retries.labels(self._action(action)).inc()

    def call_started(self, graph: str | None, call_id: str) -> None:
        """A call was answered. ``call_id`` is remembered (never a label) so that
        :meth:`call_ended` decrements the same gauge exactly once, whatever ends the call."""
        label = self._graph(graph)
        with self._active_lock:
            if call_id in self._active_calls:
                return
            self._active_calls[call_id] = label
        self._calls_started.labels(label).inc()
        self._calls_active.labels(label).inc()

    def call_moved(self, graph: str | None, call_id: str, *, arrived: bool) -> None:
        """A live call arrived from another instance, or left for one: the active gauge
        follows it; calls started and ended are counted once, where they happen."""
        label = self._graph(graph)
        with self._active_lock:
            if arrived:
                if call_id in self._active_calls:
                    return
                self._active_calls[call_id] = label
            elif self._active_calls.pop(call_id, None) is None:
                return
        if arrived:
            self._calls_active.labels(label).inc()
        else:
            self._calls_active.labels(label).dec()
        self._moves.labels("in" if arrived else "out").inc()

    def call_ended(
        self,
        record: CallRecord,
        *,
        cleanup_s: float | None = None,
        include_details: bool = True,
    ) -> None:
        """Count a finalised call.

        ``cleanup_s``: hangup-to-cleanup time measured by the caller (the manager knows when
        it started ending). ``include_details``: also count the record's tool calls, handoffs
        and guardrail trips, so one end listener is enough; pass False when those are reported
        live through :meth:`tool_finished`, :meth:`handoff` and :meth:`guardrail_tripped`.
        """
        graph = self._graph(record.graph)
        with self._active_lock:
            started_label = self._active_calls.pop(record.call_id, None)
        if started_label is not None:
            self._calls_active.labels(started_label).dec()
        self._calls_ended.labels(
            graph, call_outcome(record), self._end_reason(record.end_reason)
        ).inc()
        self._call_duration.labels(graph).observe(max(record.duration_s(), 0.0))
        if record.outbound is not None:
            self._outbound.labels(
                self._outbound_label(str(record.outbound.get("dialer"))),
                self._outbound_label(str(record.outbound.get("outcome"))),
            ).inc()
        if cleanup_s is not None:
            self._cleanup.observe(max(cleanup_s, 0.0))
        if not include_details:
            return
        for tool in record.tool_calls:
            if tool.duration_s is not None:
                self.tool_finished(tool.name, tool.outcome, tool.duration_s)
        if record.handoffs:
            self._handoffs.labels(graph).inc(record.handoffs)
        if record.guardrail_trips:
            self._guardrails.labels(graph).inc(record.guardrail_trips)

    def tool_finished(self, tool: str, outcome: str, seconds: float) -> None:
        self._tool_duration.labels(self._tool(tool), self._tool_outcome(outcome)).observe(
            max(seconds, 0.0)
        )

    def handoff(self, graph: str | None) -> None:
        self._handoffs.labels(self._graph(graph)).inc()

    def guardrail_tripped(self, graph: str | None) -> None:
        self._guardrails.labels(self._graph(graph)).inc()

    def session_error(self, code: str | None) -> None:
        self._session_errors.labels(self._error_code(code)).inc()

    # ---- post-call events -------------------------------------------------------------------

    def postcall_delivery(self, result: str) -> None:
        """Outbox hook: ``delivered``, ``retry`` or ``dead`` (see ``Outbox(on_result=...)``)."""
        if result not in ("delivered", "retry", "dead"):
            result = OTHER
        self._postcall.labels(result).inc()

    def analysis_finished(self, outcome: str, seconds: float) -> None:
        """One analysis done: ``completed`` or its failure code (bounded label)."""
        label = self._analysis_outcome(outcome)
        self._analyses.labels(label).inc()
        result = "completed" if label == "completed" else "failed"
        self._analysis_duration.labels(result).observe(max(seconds, 0.0))

    def analysis_retry(self) -> None:
        self._analysis_retries.inc()

    # ---- exposition -------------------------------------------------------------------------

    def exposition(self, accept: str | None = None) -> tuple[bytes, str]:
        """(body, content type) for ``GET /metrics``; honours an OpenMetrics ``Accept``."""
        if accept:
            encoder, content_type = choose_encoder(accept)
            return encoder(self.registry), content_type
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
