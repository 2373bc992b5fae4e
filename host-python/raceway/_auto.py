"""The automatic tracking's one piece of process state: the client it records to, and whether
strands without setup are on.

`raceway.shared` objects without a client of their own, the instrumented primitives
(`raceway.primitives`) and strands without setup (`raceway.strands`) all record to `client`
(the last one given to any of them; the pytest plugin sets it for each test). None: they record
nothing, and cost one attribute read per access.

With `strands` on, a strand (a thread, or an asyncio task) that records with no execution
context current gets one of its own (`ensure`): a new trace, bound to that strand, so that code
written with no Raceway calls at all is analysed.
"""

from __future__ import annotations

from typing import Optional

from ._client_protocol import ClientLike
from ._recorder import EventRecorder, recorder_of
from .context import ExecutionContext, strand_context
from .context import current_var as _current

client: Optional[ClientLike] = None
"""The client automatic tracking records to, or None."""

recorder: Optional[EventRecorder] = None
"""``recorder_of(client)``, kept with it: the per-access paths read it instead of asking."""

strands: bool = False
"""Strands without setup: on or off (`raceway.strands.enable_strands`)."""


def set_client(new: Optional[ClientLike]) -> Optional[ClientLike]:
    """Makes ``new`` the client automatic tracking records to; returns the one before."""
    global client, recorder
    old, client = client, new
    recorder = recorder_of(new)
    return old


def set_strands(on: bool) -> None:
    global strands
    strands = bool(on)


def ensure() -> Optional[ExecutionContext]:
    """The calling strand's execution context; with strands without setup on, a new one (a new
    trace, bound to this strand and made current here) when it has none. None when it has none
    and strands are off, or when no client is set."""
    ctx = strand_context()
    if ctx is not None or not strands:
        return ctx
    current = client
    if current is None:
        return None
    ctx = ExecutionContext.new_trace(getattr(current, "identity", None)).bind()
    _current.set(ctx)
    return ctx
