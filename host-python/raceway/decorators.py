"""Decorators that record function calls.

``@track_function(client)`` records, per call: a ``FunctionCall`` event at entry with the
arguments; at exit a ``Custom`` event ``function_return`` with the duration in nanoseconds (also
in ``metadata.duration_ns``) and, when ``capture_return=True``, the return value; and an
``Error`` event if it raised. The server has no ``FunctionReturn`` kind (it would reject the
batch), hence ``Custom``. Works on plain and ``async`` functions, and on generator and async
generator functions, whose call is their iteration: ``FunctionCall`` when the iteration starts
(the first ``next``), ``function_return`` when it ends (run out, returned, failed, or closed
early), with the duration of the whole iteration, the time the consumer spent between items
included; an exception raised during the iteration is an ``Error``; a generator closed early
(``close()``, ``break`` out of an ``async for``) is not an error.
"""

from __future__ import annotations

import functools
import inspect
import time
from typing import Any, Callable, Dict, Optional, TypeVar

from ._values import snapshot
from .context import _current, strand_context

F = TypeVar("F", bound=Callable[..., Any])


def _arguments(fn: Callable, args: tuple, kwargs: dict) -> Dict[str, Any]:
    try:
        bound = inspect.signature(fn).bind(*args, **kwargs)
        return dict(bound.arguments)
    except (TypeError, ValueError):
        return {"args": list(args), "kwargs": kwargs}


def track_function(client: Any, name: Optional[str] = None, capture_return: bool = False) -> Callable[[F], F]:
    def decorate(fn: F) -> F:
        label = name or getattr(fn, "__qualname__", getattr(fn, "__name__", "function"))

        def enter(args: tuple, kwargs: dict) -> Optional[int]:
            if _current.get() is None:
                client.track_function_call(label, None)  # the client decides: ignore or raise
                return None
            client.track_function_call(label, _arguments(fn, args, kwargs))
            return time.perf_counter_ns()

        def leave(start: Optional[int], result: Any, error: Optional[BaseException]) -> None:
            if start is None:
                return
            duration = time.perf_counter_ns() - start
            if error is not None:
                client.track_error(error)
            data: Dict[str, Any] = {"function": label, "duration_ns": duration}
            if capture_return and error is None:
                data["return_value"] = result
            ctx = strand_context()
            if ctx is not None:
                client._record(ctx, "Custom", ("function_return", snapshot(data)), duration)

        if inspect.isasyncgenfunction(fn):
            return _async_generator_wrapper(fn, enter, leave)  # type: ignore[return-value]
        if inspect.isgeneratorfunction(fn):
            return _generator_wrapper(fn, enter, leave)  # type: ignore[return-value]
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                start = enter(args, kwargs)
                try:
                    result = await fn(*args, **kwargs)
                except BaseException as e:
                    leave(start, None, e)
                    raise
                leave(start, result, None)
                return result

            return async_wrapper  # type: ignore[return-value]

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            start = enter(args, kwargs)
            try:
                result = fn(*args, **kwargs)
            except BaseException as e:
                leave(start, None, e)
                raise
            leave(start, result, None)
            return result

        return wrapper  # type: ignore[return-value]

    return decorate


def _generator_wrapper(fn: Callable[..., Any], enter: Callable[..., Any], leave: Callable[..., None]) -> Callable[..., Any]:
    """A generator function that runs ``fn``'s generator (``yield from``: ``send``, ``throw``,
    ``close`` and the return value pass through) between ``enter`` and ``leave``."""

    @functools.wraps(fn)
    def generator_wrapper(*args: Any, **kwargs: Any) -> Any:
        start = enter(args, kwargs)
        where = strand_context()
        try:
            result = yield from fn(*args, **kwargs)
        except GeneratorExit:
            _closed(start, where, leave)
            raise
        except BaseException as e:
            leave(start, None, e if isinstance(e, Exception) else None)
            raise
        leave(start, result, None)
        return result

    return generator_wrapper


def _async_generator_wrapper(fn: Callable[..., Any], enter: Callable[..., Any], leave: Callable[..., None]) -> Callable[..., Any]:
    """An async generator function that runs ``fn``'s async generator between ``enter`` and
    ``leave``, passing ``asend``, ``athrow`` and ``aclose`` through."""

    @functools.wraps(fn)
    async def async_generator_wrapper(*args: Any, **kwargs: Any) -> Any:
        start = enter(args, kwargs)
        where = strand_context()
        agen = fn(*args, **kwargs)
        try:
            item = await agen.__anext__()
            while True:
                try:
                    sent = yield item
                except GeneratorExit:
                    raise
                except BaseException as thrown:
                    item = await agen.athrow(thrown)
                else:
                    item = await agen.asend(sent)
        except StopAsyncIteration:
            leave(start, None, None)
        except GeneratorExit:
            try:
                await agen.aclose()
            finally:
                _closed(start, where, leave)
            raise
        except BaseException as e:
            leave(start, None, e if isinstance(e, Exception) else None)
            raise

    return async_generator_wrapper


def _closed(start: Any, where: Any, leave: Callable[..., None]) -> None:
    """A generator closed before its end: its return is recorded (no error) on the strand that
    iterated it. One closed by the garbage collector on some other strand records nothing:
    that strand never ran it."""
    if strand_context() is where:
        leave(start, None, None)


track_async = track_function
"""The reference SDK's name for the decorator on ``async`` functions (`track_function` handles both)."""
track_method = track_function
"""The reference SDK's name for the decorator on methods (`track_function` handles them)."""
