"""`propagation_headers()` for one outgoing call, beside OpenTelemetry's W3C propagator
injecting into a dict, and the floor (an empty method with the same argument)."""

from __future__ import annotations

from typing import Dict, List

from harness import per_call_us

INNER, REPEATS = 200, 100


def run() -> Dict[str, List[float]]:
    from raceway import Config, RacewayClient

    client = RacewayClient(Config(endpoint=None, batch_size=10**6, flush_interval=3600.0))
    out: Dict[str, List[float]] = {}
    with client.trace():
        ph = client.propagation_headers
        out["propagation_headers"] = per_call_us(lambda i: ph(None), INNER, REPEATS)
    client.shutdown(timeout=5)

    class Floor:
        def propagation_headers(self, extra_headers=None):
            pass

    fph = Floor().propagation_headers
    out["floor_propagation"] = per_call_us(lambda i: fph(None), INNER, REPEATS)

    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    propagator = TraceContextTextMapPropagator()
    tracer = TracerProvider().get_tracer("bench")
    with tracer.start_as_current_span("request"):
        out["otel_inject"] = per_call_us(lambda i: propagator.inject({}), INNER, REPEATS)
    return out
