"""Background jobs: each run of a decorated function is an execution of its own.

The idea of xraysink's ``@xray_task_async``: a job started by a scheduler, a queue consumer or a
``create_task`` has no request around it, so without help every tracking call in it would be
ignored (or raise, in strict mode). ``@background_job(raceway)`` opens a context for each run:

- called inside a request (or any context), the run is a child of it: same trace, its own
  ``thread_id``, an ``AsyncSpawn`` in the caller, and an ``AsyncAwait`` when the run returns to a
  caller that waited for it (a direct call or ``await`` waits; the caller learns the run's clock);
- called outside any context, the run starts a new trace.

Each run records a ``FunctionCall`` for the job, an ``Error`` if it raises (the exception goes on
to the caller), and the context stops being current when the run ends. Works on plain and
``async`` functions; an async run also instruments its loop so tasks it spawns get child
contexts of their own.
"""

from __future__ import annotations

import functools
import inspect
import logging
from typing import TYPE_CHECKING, Any, Callable, Dict, Optional, Tuple, TypeVar

from ._recorder import warn_once
from .concurrency import instrument_loop
from .context import CurrentToken, ExecutionContext, enter, leave, strand_context
from .context import current_var as _current

if TYPE_CHECKING:
    from ._client_protocol import ClientLike

log = logging.getLogger("raceway")

F = TypeVar("F", bound=Callable[..., Any])


def background_job(client: ClientLike, name: Optional[str] = None, *, capture_args: bool = False) -> Callable[[F], F]:
    """Decorator: ``@background_job(raceway)`` or ``@background_job(raceway, "cleanup")``.

    ``capture_args`` records the call's arguments in the ``FunctionCall`` event (off by default:
    jobs often get large or sensitive payloads)."""

    def decorate(fn: F) -> F:
        qualname: str = getattr(fn, "__qualname__", getattr(fn, "__name__", "job"))
        label = name or qualname

        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def run_async(*args: Any, **kwargs: Any) -> Any:
                instrument_loop(client)
                run = _Run(client, label)
                run.begin(args, kwargs, capture_args)
                try:
                    return await fn(*args, **kwargs)
                except Exception as e:
                    run.error(e)
                    raise
                finally:
                    run.end()

            return run_async  # type: ignore[return-value]  # fn's signature (functools.wraps)

        @functools.wraps(fn)
        def run_sync(*args: Any, **kwargs: Any) -> Any:
            run = _Run(client, label)
            run.begin(args, kwargs, capture_args)
            try:
                return fn(*args, **kwargs)
            except Exception as e:
                run.error(e)
                raise
            finally:
                run.end()

        return run_sync  # type: ignore[return-value]  # fn's signature (functools.wraps)

    return decorate


xray_task = background_job
"""Alias named after the seed's decorator (it handles sync and async functions alike)."""


class _Run:
    """One run's context: opened as a child of the caller's context or as a new trace."""

    __slots__ = ("client", "label", "parent", "ctx", "token")

    def __init__(self, client: ClientLike, label: str):
        self.client = client
        self.label = label
        self.parent: Optional[ExecutionContext] = None
        self.ctx: Optional[ExecutionContext] = None
        self.token: Optional[CurrentToken] = None

    def begin(self, args: Tuple[Any, ...], kwargs: Dict[str, Any], capture_args: bool) -> None:
        try:
            self.parent = strand_context()
            identity = getattr(self.client, "identity", None)
            ctx = self.client.fork(self.parent) if self.parent is not None else ExecutionContext.new_trace(identity)
            self.ctx = ctx
            self.token = enter(ctx, None)
            data = {"args": list(args), "kwargs": kwargs} if capture_args else None
            self.client.track_function_call(self.label, data)
        except Exception as e:
            _warn(self.client, "job-begin", "raceway: cannot open a background job context: %s", e)

    def error(self, exc: BaseException) -> None:
        if self.ctx is None or _current.get() is not self.ctx:
            return
        try:
            self.client.track_error(exc)
        except Exception as e:
            _warn(self.client, "job-error", "raceway: cannot record a job's error: %s", e)

    def end(self) -> None:
        token, self.token = self.token, None
        ctx = self.ctx
        if token is None or ctx is None:  # (a token is only taken once the context is made)
            return
        try:
            leave(ctx, token)
            if self.parent is not None:
                self.client.join(self.parent, ctx)  # the caller waited for this run
        except Exception as e:
            _warn(self.client, "job-end", "raceway: cannot close a background job context: %s", e)


def _warn(client: ClientLike, key: str, msg: str, *args: object) -> None:
    try:
        warn_once(client, key, msg, *args)
    except Exception:  # pragma: no cover
        pass
