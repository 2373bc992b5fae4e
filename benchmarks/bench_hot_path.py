"""`track_state_change` / `track_function_call` on the application thread, inside a context,
beside an OpenTelemetry span with one event (BatchSpanProcessor) and the floor: an empty Python
method called with the same arguments.

The flusher is kept idle and the record log drained between rounds, so this is the cost the
application thread pays per call; the background cost is `bench_pipeline`'s figure."""

from __future__ import annotations

from typing import Dict, List

from harness import per_call_us

INNER, REPEATS = 2000, 200


class _Floor:
    def track_state_change(self, variable, old_value, new_value, access_type="Write"):
        pass

    def track_function_call(self, function_name, args=None, duration_ns=None):
        pass


def run() -> Dict[str, List[float]]:
    from raceway import Config, RacewayClient

    client = RacewayClient(Config(endpoint=None, batch_size=10**6, flush_interval=3600.0, max_queue_size=10**7))
    drain = client._queue.clear
    floor = _Floor()
    out: Dict[str, List[float]] = {}
    with client.trace():
        tsc, tfc = client.track_state_change, client.track_function_call
        out["state_change"] = per_call_us(lambda i: tsc("account.balance", i, i + 1, "Write"), INNER, REPEATS, drain)
        out["function_call"] = per_call_us(lambda i: tfc("transfer"), INNER, REPEATS, drain)
        args = {"from": "alice", "to": "bob", "amount": 100}
        out["function_call_args"] = per_call_us(lambda i: tfc("transfer", args), INNER, REPEATS, drain)
    fsc, ffc = floor.track_state_change, floor.track_function_call
    out["floor_state_change"] = per_call_us(lambda i: fsc("account.balance", i, i + 1, "Write"), INNER, REPEATS)
    out["floor_function_call"] = per_call_us(lambda i: ffc("transfer", args), INNER, REPEATS)
    client.shutdown(timeout=5)
    out.update(_otel())
    return out


def _otel() -> Dict[str, List[float]]:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

    class Discard(SpanExporter):
        def export(self, spans):
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(Discard()))
    tracer = provider.get_tracer("bench")

    def span_with_event(i: int) -> None:
        with tracer.start_as_current_span("transfer") as span:
            span.add_event("account.balance", {"old": i, "new": i + 1})

    with tracer.start_as_current_span("request"):
        samples = per_call_us(span_with_event, INNER // 4, REPEATS // 2)
    provider.shutdown()
    return {"otel_span_event": samples}
