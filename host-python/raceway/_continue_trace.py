"""Across processes: `continue_trace` opens, in this process, the trace that headers handed over
with the work carry (through a ``ProcessPoolExecutor``, a queue, a file), as a request's
headers are read.
"""

from __future__ import annotations

import sys
from contextvars import Token
from typing import Any, Iterable, Mapping, Optional, Tuple, Union

from ._client_protocol import ClientLike
from ._incoming import context_from_headers, gather
from ._recorder import warn_once_per_process
from .context import ExecutionContext, enter, leave

Headers = Union[Mapping[str, str], Iterable[Tuple[str, str]]]
"""Trace headers as a mapping or as ``(name, value)`` pairs."""


def continue_trace(client: Optional[ClientLike], headers: Headers) -> "_ContinuedTrace":
    """Continues, in this process, the trace that ``headers`` carry: the
    ``client.propagation_headers()`` of the process that handed the work over (passed with it
    through a ``ProcessPoolExecutor``, a queue, a file...). The headers are read by the core as
    a request's are; invalid or missing ones start a new trace. The context is current inside
    the block and stops being current after it (inside a generator, only while it runs, as
    with `RacewayClient.trace`).

        # parent                                   # worker process (its own RacewayClient)
        pool.submit(job, raceway.propagation_headers(), data)
                                                   def job(headers, data):
                                                       with continue_trace(raceway, headers):
                                                           ...
    """
    return _ContinuedTrace(client, headers)


class _ContinuedTrace:
    """`continue_trace`'s context manager (a class, so it can see the frame that opens it)."""

    __slots__ = ("client", "headers", "ctx", "token")

    def __init__(self, client: Optional[ClientLike], headers: Headers):
        self.client, self.headers = client, headers
        self.ctx: Optional[ExecutionContext] = None
        self.token: Optional[Token[Optional[ExecutionContext]]] = None

    def __enter__(self) -> ExecutionContext:
        try:
            pairs = self.headers.items() if isinstance(self.headers, Mapping) else self.headers
            ctx = context_from_headers(self.client, gather(pairs))
        except Exception as e:
            warn_once_per_process("continue-trace", "raceway: cannot continue a trace: %s", e)
            ctx = ExecutionContext.new_trace(getattr(self.client, "identity", None))
        self.ctx = ctx
        self.token = enter(ctx, sys._getframe(1))
        return ctx

    def __exit__(self, *exc: Any) -> None:
        if self.ctx is not None and self.token is not None:
            leave(self.ctx, self.token)
