"""Decorators that record function calls.

``@track_function(client)`` records, per call: a ``FunctionCall`` event at entry (its args
``{}``, or the arguments with ``capture_args=True``); at exit a ``Custom`` event
``function_return`` with the duration in nanoseconds (also in ``metadata.duration_ns``) and,
with ``capture_result=True``, the return value; and an ``Error`` event if it raised. The
signatures are the reference SDK's (``track_function(client=None, *, name, capture_args,
capture_result)``, ``track_async`` alike, ``track_method(client_attr="_raceway_client", *,
...)``); the exit is this SDK's ``function_return`` rather than the reference's second
``FunctionCall`` named ``name:return``/``name:error`` (docs/compatibility.md). The server has
no ``FunctionReturn`` kind (it would reject the batch), hence ``Custom``. Works on plain and
``async`` functions, and on generator and async generator functions, whose call is their
iteration: ``FunctionCall`` when the iteration starts
(the first ``next``), ``function_return`` when it ends (run out, returned, failed, or closed
early), with the duration of the whole iteration, the time the consumer spent between items
included; an exception raised during the iteration is an ``Error``; a generator closed early
(``close()``, ``break`` out of an ``async for``) is not an error.
"""

from __future__ import annotations

import functools
import inspect
import logging
import time
from typing import (
    TYPE_CHECKING,
    Any,
    AsyncGenerator,
    Callable,
    Dict,
    Generator,
    List,
    Optional,
    Tuple,
    TypeVar,
    overload,
)

from ._recorder import recorder_of
from ._values import snapshot
from .context import ExecutionContext, strand_context
from .context import current_var as _current

if TYPE_CHECKING:
    from ._client_protocol import ClientLike

    _Start = Tuple[ClientLike, int]
    """A recorded call's client and its start (``perf_counter_ns``)."""
    _Enter = Callable[[Tuple[Any, ...], Dict[str, Any]], Optional[_Start]]
    """Records a call's entry from its arguments; None when it is not recorded."""
    _Leave = Callable[[Optional[_Start], object, Optional[BaseException]], None]
    """Records a call's exit: its entry, its result, the exception it raised."""

F = TypeVar("F", bound=Callable[..., Any])

log = logging.getLogger("raceway")

CLIENT_ATTR = "_raceway_client"
"""The attribute `track_method` (and the client-less forms) read the client from, per call."""


def _arguments(
    fn: Callable[..., Any],
    signature: List[inspect.Signature],
    args: Tuple[Any, ...],
    kwargs: Dict[str, Any],
    skip_first: bool,
) -> Dict[str, Any]:
    """The call's arguments by parameter name, defaults applied (the reference SDK's
    ``bind`` + ``apply_defaults``); without the instance for a method. ``signature`` caches
    ``inspect.signature(fn)`` (it costs microseconds) in a one-item list."""
    try:
        if not signature:
            signature.append(inspect.signature(fn))
        bound = signature[0].bind(*args, **kwargs)
        bound.apply_defaults()
        out = dict(bound.arguments)
        if skip_first and out:
            del out[next(iter(out))]
        return out
    except (TypeError, ValueError):
        return {"args": list(args[1:] if skip_first else args), "kwargs": kwargs}


def _default_name(fn: Callable[..., Any], method: bool) -> str:
    """The reference SDK's defaults: ``module.qualname``; for `track_method`, ``qualname``."""
    qualname: str = getattr(fn, "__qualname__", "") or getattr(fn, "__name__", "function")
    module = getattr(fn, "__module__", None)
    return qualname if method or not module else f"{module}.{qualname}"


def _client_of(args: Tuple[Any, ...], attr: str) -> Optional[ClientLike]:
    """The client held by the call's first argument (the instance, for a method), or None."""
    if not args:
        return None
    try:
        found: Optional[ClientLike] = getattr(args[0], attr, None)
    except Exception:  # a __getattr__ that raises: no client, and the call goes on
        return None
    return found if callable(getattr(found, "track_function_call", None)) else None


def _is_bare(target: object) -> bool:
    """``@track_function`` without parentheses: the decorator got the function itself."""
    return callable(target) and not isinstance(target, str) and not hasattr(target, "track_function_call")


def _tracker(
    client: Optional[ClientLike],
    client_attr: str,
    name: Optional[str],
    capture_args: bool,
    capture_result: bool,
    method: bool,
) -> Callable[[F], F]:
    """The decorator behind the three public forms. It records with ``client`` or, when that
    is None, with the client in the ``client_attr`` attribute of the call's first argument,
    looked up at each call (the instance's, for a method)."""

    def decorate(fn: F) -> F:
        label = name or _default_name(fn, method)
        signature: List[inspect.Signature] = []
        warned: List[bool] = []
        given = recorder_of(client)  # the given client's recorder (None: looked up per call)

        def enter(args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> Optional[_Start]:
            tracker = client if client is not None else _client_of(args, client_attr)
            if tracker is None:
                if not warned:
                    warned.append(True)
                    log.warning(
                        "raceway: %s: no client to record with (pass a RacewayClient to the decorator, "
                        "or give the instance a %r attribute holding one); its calls run unrecorded",
                        label,
                        client_attr,
                    )
                return None
            if _current.get() is None:
                tracker.track_function_call(label, None)  # the client decides: ignore or raise
                return None
            payload: Dict[str, Any] = {}
            if method and args:
                payload["class"] = type(args[0]).__name__
            if capture_args:
                payload["args"] = _arguments(fn, signature, args, kwargs, method)
            tracker.track_function_call(label, payload)
            return (tracker, time.perf_counter_ns())

        def leave(start: Optional[_Start], result: object, error: Optional[BaseException]) -> None:
            if start is None:
                return
            tracker, began = start
            duration = time.perf_counter_ns() - began
            if error is not None:
                tracker.track_error(error)
            data: Dict[str, Any] = {"function": label, "duration_ns": duration}
            if capture_result and error is None:
                data["return_value"] = result
            ctx = strand_context()
            if ctx is not None:
                log = given if tracker is client else recorder_of(tracker)
                if log is not None:
                    log.record(ctx, "Custom", ("function_return", snapshot(data)), duration)
                else:  # not a RacewayClient: its public method (without the duration)
                    tracker.track_custom("function_return", data)

        # Each wrapper has fn's signature and kind (functools.wraps): the checker cannot see it as F.
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


def _generator_wrapper(
    fn: Callable[..., Generator[Any, Any, Any]], enter: _Enter, leave: _Leave
) -> Callable[..., Generator[Any, Any, Any]]:
    """A generator function that runs ``fn``'s generator (``yield from``: ``send``, ``throw``,
    ``close`` and the return value pass through) between ``enter`` and ``leave``."""

    @functools.wraps(fn)
    def generator_wrapper(*args: Any, **kwargs: Any) -> Generator[Any, Any, Any]:
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


def _async_generator_wrapper(
    fn: Callable[..., AsyncGenerator[Any, Any]], enter: _Enter, leave: _Leave
) -> Callable[..., AsyncGenerator[Any, Any]]:
    """An async generator function that runs ``fn``'s async generator between ``enter`` and
    ``leave``, passing ``asend``, ``athrow`` and ``aclose`` through."""

    @functools.wraps(fn)
    async def async_generator_wrapper(*args: Any, **kwargs: Any) -> AsyncGenerator[Any, Any]:
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


def _closed(start: Optional[_Start], where: Optional[ExecutionContext], leave: _Leave) -> None:
    """A generator closed before its end: its return is recorded (no error) on the strand that
    iterated it. One closed by the garbage collector on some other strand records nothing:
    that strand never ran it."""
    if strand_context() is where:
        leave(start, None, None)


@overload
def track_function(client: F) -> F: ...
@overload
def track_function(
    client: Optional[ClientLike] = None,
    name: Optional[str] = None,
    *,
    capture_args: bool = False,
    capture_result: bool = False,
    capture_return: bool = False,
) -> Callable[[F], F]: ...


def track_function(
    client: Any = None,  # as the overloads say: a client, None, or (bare) the function
    name: Optional[str] = None,
    *,
    capture_args: bool = False,
    capture_result: bool = False,
    capture_return: bool = False,
) -> Any:
    """``@track_function(client, name=None, capture_args=False, capture_result=False)``: records
    each call of the decorated function (the reference SDK's signature; see the module
    docstring for the events).

    - ``client``: the `RacewayClient` to record with. None (``@track_function()``, or bare
      ``@track_function``): the client in the first argument's ``_raceway_client`` attribute
      at each call, as the reference SDK does; without one the call runs unrecorded, and one
      WARNING per function says so.
    - ``name``: the function name recorded; default ``module.qualname``.
    - ``capture_args``: put the arguments in the ``FunctionCall`` event, as
      ``{"args": {parameter: value}}`` with defaults applied, each value converted like any
      value (docs/values.md; the reference sends ``repr`` strings). Off by default: arguments
      often hold passwords and tokens. Off, ``args`` is ``{}``.
    - ``capture_result`` (``capture_return``, this SDK's earlier name): put the return value
      in the ``function_return`` event as ``return_value``.

    Raises nothing of its own; a call outside any execution context runs unrecorded (or, with
    ``Config.strict_context``, the client raises ``RuntimeError``)."""
    if _is_bare(client):  # ``@track_function`` without parentheses: ``client`` is the function
        return _tracker(None, CLIENT_ATTR, None, False, False, False)(client)
    return _tracker(client, CLIENT_ATTR, name, capture_args, capture_result or capture_return, False)


@overload
def track_async(client: F) -> F: ...
@overload
def track_async(
    client: Optional[ClientLike] = None,
    name: Optional[str] = None,
    *,
    capture_args: bool = False,
    capture_result: bool = False,
    capture_return: bool = False,
) -> Callable[[F], F]: ...


def track_async(
    client: Any = None,  # as the overloads say
    name: Optional[str] = None,
    *,
    capture_args: bool = False,
    capture_result: bool = False,
    capture_return: bool = False,
) -> Any:
    """The reference SDK's decorator for ``async`` functions: `track_function`, which handles
    ``async`` functions (and plain ones: the reference raises ``TypeError`` for those)."""
    return track_function(
        client, name, capture_args=capture_args, capture_result=capture_result, capture_return=capture_return
    )


@overload
def track_method(client_attr: F) -> F: ...
@overload
def track_method(
    client_attr: str | ClientLike = CLIENT_ATTR,
    name: Optional[str] = None,
    *,
    capture_args: bool = False,
    capture_result: bool = False,
    capture_return: bool = False,
) -> Callable[[F], F]: ...


def track_method(
    client_attr: Any = CLIENT_ATTR,  # as the overloads say: a name, a client, or (bare) the method
    name: Optional[str] = None,
    *,
    capture_args: bool = False,
    capture_result: bool = False,
    capture_return: bool = False,
) -> Any:
    """``@track_method(client_attr="_raceway_client", name=None, capture_args=False,
    capture_result=False)``: records each call of a method with the client held in the
    instance's ``client_attr`` attribute, looked up at each call (the reference SDK's
    signature). The ``FunctionCall`` args hold ``{"class": <the instance's class name>}`` and,
    with ``capture_args``, ``"args"`` without the instance. The name defaults to ``qualname``.

    ``client_attr`` may also be a `RacewayClient` (``@track_method(client)``, as this SDK took
    it before): that client is used. An instance without the attribute runs the call
    unrecorded, with one WARNING per method. Plain, ``async`` and generator methods alike."""
    if _is_bare(client_attr):  # ``@track_method`` without parentheses: the method itself
        return _tracker(None, CLIENT_ATTR, None, False, False, True)(client_attr)
    result = capture_result or capture_return
    if isinstance(client_attr, str):
        return _tracker(None, client_attr, name, capture_args, result, True)
    return _tracker(client_attr, CLIENT_ATTR, name, capture_args, result, True)
