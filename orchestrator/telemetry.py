"""Optional OpenTelemetry export: a run's events as spans (run, plan, subtasks, attempts).

Nothing is exported unless the user asks: pass a ``TracerProvider`` to the Orchestrator,
or set ``ORCHESTRATOR_OTEL=1`` and configure the global provider (or set
``OTEL_EXPORTER_OTLP_ENDPOINT``, for which an OTLP exporter is installed on first use).
The spans are built from the same events that the CLI, the run store and traces read.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any, cast

from orchestrator.errors import ConfigError
from orchestrator.events import (
    AttemptFinishedData,
    Event,
    PlanMadeData,
    RunStartedData,
    SubtaskEndedData,
    SubtaskStartedData,
)

_ATTEMPT_ENDS = ("attempt_finished",)
_SUBTASK_ENDS = ("subtask_finished", "subtask_failed", "subtask_skipped")


def default_tracer_provider() -> Any:
    """The provider ``ORCHESTRATOR_OTEL=1`` uses: the global one, with an OTLP exporter
    added when ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set and no SDK provider is configured."""
    try:
        from opentelemetry import trace
    except ImportError:
        raise ConfigError("ORCHESTRATOR_OTEL is on but OpenTelemetry is not installed: "
                          "pip install 'agent-orchestrator[otel]'") from None
    provider = trace.get_tracer_provider()
    if os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") and not hasattr(provider,
                                                                       "add_span_processor"):
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        provider = TracerProvider()
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        trace.set_tracer_provider(provider)
    return provider


def export_run(events: Sequence[Event], provider: Any) -> None:
    """Emit one trace for the run in ``events`` through ``provider``'s tracer."""
    if not events:
        return
    from opentelemetry import trace

    tracer = provider.get_tracer("agent-orchestrator")
    first, last = events[0], events[-1]
    root = tracer.start_span("orchestrator.run", start_time=_ns(first.time), attributes={
        "orchestrator.run_id": first.run_id,
        "orchestrator.request": str(cast(RunStartedData, first.data).get("request", ""))[:500]})
    parent = trace.set_span_in_context(root)
    subtasks: dict[str, Any] = {}
    attempt_start: dict[str, float] = {}
    for event in events:
        sid = event.subtask_id or ""
        if event.type == "plan_made":
            span = tracer.start_span("orchestrator.plan", context=parent,
                                     start_time=_ns(first.time),
                                     attributes={"orchestrator.mode":
                                                 cast(PlanMadeData, event.data)["mode"],
                                                 **_usage(event)})
            span.end(end_time=_ns(event.time))
        elif event.type == "subtask_started":
            subtasks[sid] = tracer.start_span(
                f"orchestrator.subtask {sid}", context=parent, start_time=_ns(event.time),
                attributes={"orchestrator.subtask_id": sid, "orchestrator.agent": event.agent
                            or "", "orchestrator.goal":
                            cast(SubtaskStartedData, event.data)["goal"][:500]})
            attempt_start[sid] = event.time
        elif event.type in ("tool_called", "tool_refused", "agent_status", "retried",
                            "reassigned", "agent_chosen") and sid in subtasks:
            subtasks[sid].add_event(event.type, timestamp=_ns(event.time),
                                    attributes=_flat(event.data))
        elif event.type in _ATTEMPT_ENDS and sid in subtasks:
            attempt = cast(AttemptFinishedData, event.data)
            span = tracer.start_span(
                f"orchestrator.attempt {sid}", context=trace.set_span_in_context(subtasks[sid]),
                start_time=_ns(attempt_start.get(sid, event.time)),
                attributes={"orchestrator.agent": event.agent or "",
                            "orchestrator.status": attempt["status"],
                            "orchestrator.failure_kind": attempt["kind"] or "",
                            **_usage(event)})
            span.end(end_time=_ns(event.time))
            attempt_start[sid] = event.time
        elif event.type in _SUBTASK_ENDS and sid in subtasks:
            span, ended = subtasks.pop(sid), cast(SubtaskEndedData, event.data)
            span.set_attributes({"orchestrator.status": ended["status"],
                                 "orchestrator.failure_kind": ended["kind"] or "",
                                 **_usage(event)})
            if ended["status"] != "done":
                span.set_status(trace.Status(trace.StatusCode.ERROR,
                                             str(ended.get("error") or "")[:200]))
            span.end(end_time=_ns(event.time))
        elif event.type in ("replanned", "budget_hit", "approval_requested",
                            "approval_decided"):
            root.add_event(event.type, timestamp=_ns(event.time), attributes=_flat(event.data))
    for span in subtasks.values():  # paused or cut short: close what is open
        span.end(end_time=_ns(last.time))
    if last.type == "answer":
        root.set_attributes(_usage(last))
    root.end(end_time=_ns(last.time))


def _ns(seconds: float) -> int:
    return int(seconds * 1_000_000_000)


def _usage(event: Event) -> dict[str, int]:
    return {f"orchestrator.{k}": int(v) for k, v in (event.usage or {}).items()}


def _flat(data: Mapping[str, Any]) -> dict[str, str | int | float | bool]:
    out: dict[str, str | int | float | bool] = {}
    for key, value in data.items():
        if isinstance(value, str | int | float | bool):
            out[key] = value if not isinstance(value, str) else value[:500]
        elif value is not None:
            out[key] = str(value)[:500]
    return out
