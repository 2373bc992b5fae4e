"""The reference SDK's ``raceway.middleware.raceway_context`` decorator."""

from __future__ import annotations

import functools
import inspect
from typing import Any, Callable, Optional

from ..context import create_context, reset_context, set_context


def raceway_context(trace_id: Optional[str] = None) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``@raceway_context()``: each call of the decorated function (plain or ``async``) runs in
    a new execution context, of the trace ``trace_id`` (any string, as in `create_context`)
    or of a new trace. No client is involved, so nothing is recorded for the context itself;
    the ``track_*`` calls made inside are.

    The reference SDK leaves that context current after the function returns (it never resets
    it), so a later call in the same thread or task records into a finished context. Here the
    context that was current before (or none) is current again when the call returns or
    raises."""

    def decorator(func: Callable[..., Any]) -> Callable[..., Any]:
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                token = set_context(create_context(trace_id))
                try:
                    return await func(*args, **kwargs)
                finally:
                    reset_context(token)

            return async_wrapper

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            token = set_context(create_context(trace_id))
            try:
                return func(*args, **kwargs)
            finally:
                reset_context(token)

        return wrapper

    return decorator
