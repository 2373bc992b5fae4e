"""The hot paths make no bound method object per call.

In CPython 3.11 and 3.12 a call ``name.method(...)`` on a name bound by an ``import`` statement
compiles to LOAD_GLOBAL + LOAD_ATTR instead of LOAD_METHOD (the compiler assumes the name is a
module): every call then allocates a bound method, ~40 ns on a ~500 ns path. The hot paths take
such methods once, at import (``_current_get = current_var.get``). This test reads the compiled
bytecode, so it fails the day someone writes ``current_var.get()`` there again."""

from __future__ import annotations

import dis
import sys
import types
from typing import Callable, List

import pytest

from raceway import _recorder, _recording, client, primitives
from raceway.middleware import _scope

HOT: List[Callable[..., object]] = [
    # per event
    client.RacewayClient.track_state_change,
    client.RacewayClient.track_function_call,
    _recorder.EventRecorder.append,
    _recorder.EventRecorder.record,
    _recording.emit,
    _recording._record,
    _recording._located,
    _recording.strand,
    _recording.record_event,
    primitives._edge,
    # per request, or per step of a streamed body
    _scope.RequestScope.activate,
    _scope.RequestScope.step,
    _scope.RequestScope.astep,
    _scope.RequestScope.collect,
]


def _attribute_loads_on_globals(fn: Callable[..., object]) -> List[str]:
    """``name.attr`` loads where ``name`` is a module global that is not a module (a method
    fetched from a dict, a context variable, ...)."""
    code = fn.__code__  # type: ignore[attr-defined]
    env = fn.__globals__  # type: ignore[attr-defined]
    found = []
    ins = list(dis.get_instructions(code))
    for a, b in zip(ins, ins[1:], strict=False):
        if a.opname == "LOAD_GLOBAL" and b.opname == "LOAD_ATTR":
            name = a.argval
            if not isinstance(env.get(name), types.ModuleType):
                found.append(f"{name}.{b.argval} at line {a.positions.lineno if a.positions else '?'}")
    return found


@pytest.mark.skipif(sys.version_info >= (3, 13), reason="3.13 compiles these calls as method calls")
@pytest.mark.parametrize("fn", HOT, ids=lambda f: f.__qualname__)
def test_no_bound_method_is_made_per_call(fn):
    assert _attribute_loads_on_globals(fn) == []


def test_the_check_finds_the_pattern():
    src = "from os import environ as e\n\n\ndef f():\n    return e.get('A')\n"
    env: dict = {}
    exec(compile(src, "<check>", "exec"), env)
    if sys.version_info < (3, 13):
        assert _attribute_loads_on_globals(env["f"]) == ["e.get at line 5"]
