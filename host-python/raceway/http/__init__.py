"""Automatic propagation for outgoing HTTP calls, opt-in: ``requests``, ``httpx`` (sync and
async), ``urllib3`` and ``aiohttp``'s client.

    import raceway
    raceway.instrument_http(client)      # on: every library installed, or libraries=(...)
    raceway.uninstrument_http()          # off: the libraries' own methods are back

While it is on, each call made inside an execution context carries
`RacewayClient.propagation_headers` (a new span for the callee, the sender's clock component
counted) unless the caller set ``traceparent`` or ``raceway-clock`` itself, and is recorded as
``HttpRequest`` (method, URL without credentials or query string) and ``HttpResponse``
(status, duration). Calls outside any context, the SDK's own delivery and calls to the Raceway
endpoint go out untouched. The Raceway API key is never added to anything. A failure of ours
is logged once and the call goes out as the application made it. docs/distributed.md.

One module per library (``_requests``, ``_httpx``, ``_urllib3``, ``_aiohttp``); what they share
is in ``_call`` (the decision, the headers, the events) and ``_patching`` (installing and
removing the wrappers).
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
from typing import Iterable, Optional, Tuple

from .._client_protocol import ClientLike
from . import _call, _patching

log = logging.getLogger("raceway")

LIBRARIES: Tuple[str, ...] = ("requests", "httpx", "urllib3", "aiohttp")
"""Every library this module instruments, by the name it is imported as."""

_instrumented: Tuple[str, ...] = ()


def instrument_http(
    client: ClientLike, *, libraries: Optional[Iterable[str]] = None, include_query: bool = False
) -> Tuple[str, ...]:
    """Switches automatic propagation on for ``client`` (its contexts' headers and events).

    ``libraries``: the ones to instrument (default: every one of `LIBRARIES` that is
    installed; each is imported here, once). ``include_query``: record the query string in
    ``HttpRequest`` (off: query strings often carry tokens).

    Idempotent: calling it again changes nothing but the client and the options (one client
    at a time: the latest call's). Returns the libraries instrumented.

    :raises ValueError: ``libraries`` names one not in `LIBRARIES`.
    :raises TypeError: ``client`` is not a client (it has no ``propagation_headers``).
    :raises ImportError: a library named in ``libraries`` cannot be imported.
    """
    global _instrumented
    chosen = tuple(LIBRARIES if libraries is None else libraries)
    unknown = [name for name in chosen if name not in LIBRARIES]
    if unknown:
        raise ValueError(f"instrument_http: unknown libraries {unknown}; supported: {', '.join(LIBRARIES)}")
    if client is None or not hasattr(client, "propagation_headers"):
        raise TypeError("instrument_http() takes a RacewayClient")
    with _patching.lock:
        done = []
        for name in chosen:
            if libraries is None and importlib.util.find_spec(name) is None:
                continue  # not installed: nothing to instrument
            try:
                importlib.import_module(f"{__name__}._{name}").patch()
            except ImportError as e:
                if libraries is not None:
                    raise ImportError(f"instrument_http: cannot instrument {name}: {e}") from e
                log.debug("raceway: %s not instrumented: %s", name, e)
                continue
            done.append(name)
        previous = _call.active()
        if previous is not None and previous.client is not client:
            log.debug("raceway: outgoing HTTP now traced for another client")
        _call.activate(_call.Tracer(client, include_query))
        _instrumented = tuple(dict.fromkeys(_instrumented + tuple(done)))
        return tuple(done)


def uninstrument_http() -> None:
    """Switches automatic propagation off and puts the libraries' own methods back.
    Idempotent; calls in flight finish as they started."""
    global _instrumented
    with _patching.lock:
        _call.activate(None)
        _patching.unwrap_all()
        _instrumented = ()


def instrumented() -> Tuple[str, ...]:
    """The libraries instrumented now (empty when off)."""
    return _instrumented if _call.active() is not None else ()


__all__ = ["instrument_http", "uninstrument_http", "instrumented", "LIBRARIES"]
