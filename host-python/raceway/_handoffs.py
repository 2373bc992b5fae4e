"""Explicit hand-offs: `capture` what a context knew where work is handed over, and run the work
later, anywhere, in a child of it (`run_with_context`, `bind`).
"""

from __future__ import annotations

import contextvars
import functools
from typing import Any, Callable, Optional, TypeVar, Union

from ._recorder import warn_once_per_process
from .context import ExecutionContext, strand_context
from .context import current_var as _current

T = TypeVar("T")


class Handoff:
    """What a context knew at the moment it handed work over, captured on its own strand (see
    `capture`). Each run started from it is a new child that knows exactly that much."""

    __slots__ = ("trace_id", "span_id", "upstream_span_id", "tracestate", "flags", "clock", "identity")

    def __init__(self, ctx: ExecutionContext):
        ctx.tick()  # the hand-over is a step of ctx: its earlier events come strictly before
        self.trace_id = ctx.trace_id
        self.span_id = ctx.span_id
        self.upstream_span_id = ctx.upstream_span_id
        self.tracestate = ctx.tracestate
        self.flags = ctx.flags
        self.clock = ctx.clock()
        self.identity = ctx.identity

    def child(self) -> ExecutionContext:
        return ExecutionContext(
            self.trace_id, self.span_id, self.upstream_span_id, self.tracestate, self.flags, self.clock, self.identity
        )


def capture(ctx: Optional[ExecutionContext] = None) -> Optional[Handoff]:
    """Captures the current context (or ``ctx``) for work that will run elsewhere, later. Call it
    where the work is handed over; pass the result to `run_with_context`. None outside any
    context."""
    ctx = ctx if ctx is not None else strand_context()
    return Handoff(ctx) if ctx is not None else None


def run_with_context(
    ctx: Union[Handoff, ExecutionContext, contextvars.Context, None], fn: Callable[..., T], *args: Any, **kwargs: Any
) -> T:
    """Runs ``fn(*args, **kwargs)`` in a new child of ``ctx`` and returns its result; the
    caller's context is as before afterwards. Meant for work handed to a plain thread pool or a
    library's thread (the seed's pattern):

        ctx = capture()            # or raceway.get_context()
        executor.submit(run_with_context, ctx, my_function, arg1)

    Each run gets its own ``thread_id``, so concurrent runs never share a context. ``ctx`` may be
    a `Handoff` from `capture` (exact: the run knows what the context did up to the capture),
    an `ExecutionContext` (the run knows what it had done when the run starts, which may be a
    little more), or a ``contextvars.Context`` holding one (its other variables are kept). No
    join is recorded: nothing here sees the result being collected; `ContextAwareThreadPoolExecutor`
    records both edges."""
    if isinstance(ctx, contextvars.Context):
        base = ctx.copy()
        parent: Union[Handoff, ExecutionContext, None] = ctx.get(_current)
    else:
        base = contextvars.copy_context()
        parent = ctx
    if parent is not None:
        try:
            base.run(_current.set, parent.child())
        except Exception as e:
            warn_once_per_process("run-with-context", "raceway: cannot make a child context: %s", e)
    return base.run(fn, *args, **kwargs)


def bind(fn: Callable[..., T], ctx: Optional[ExecutionContext] = None) -> Callable[..., T]:
    """Wraps a callback so that whenever (and on whichever thread) a library calls it, it runs
    in a new child of ``ctx`` (default: the context current now), captured now. Outside any
    context the callback is returned unchanged."""
    handoff = capture(ctx)
    if handoff is None:
        return fn

    @functools.wraps(fn)
    def bound(*args: Any, **kwargs: Any) -> T:
        return run_with_context(handoff, fn, *args, **kwargs)

    return bound
