"""A direct caller for component functions whose values are strings (and u32s).

wasmtime-py's `Func.__call__` rebuilds the function's type description and its converters on
every call (~20 µs for one string in and a ``result<string, string>`` out). The C call itself
costs ~6 µs. Our WIT only passes strings and u32s, so for those shapes this module lowers and
lifts values itself from the C structures, with the type checked once when the caller is made.

It uses wasmtime-py's ctypes bindings (``wasmtime._ffi``), which are not a public API; the
wasmtime major version is pinned for that reason, `make_caller` returns None when anything it
relies on is missing or the function's type is not one it handles, and `_core` then uses the
public path. tests/test_fastcall.py checks both paths give the same answers.
"""

from __future__ import annotations

import ctypes
from ctypes import POINTER, byref, c_uint8, string_at
from typing import Any, Callable, Optional

try:
    from wasmtime import WasmtimeError
    from wasmtime import _ffi as ffi
    from wasmtime.component import Func, ResultType, String, U32
    from wasmtime.component._enter import maybe_raise_last_exn

    _VAL = ffi.wasmtime_component_val_t
    _STRING = ffi.WASMTIME_COMPONENT_STRING.value
    _U32 = ffi.WASMTIME_COMPONENT_U32.value
    _RESULT = ffi.WASMTIME_COMPONENT_RESULT.value
    _call = ffi.wasmtime_component_func_call
    _post_return = ffi.wasmtime_component_func_post_return
    _val_delete = ffi.wasmtime_component_val_delete
    _vec_new = ffi.wasm_byte_vec_new
    AVAILABLE = True
except (ImportError, AttributeError):  # pragma: no cover - another wasmtime-py layout
    AVAILABLE = False


class CallError(Exception):
    """The component answered ``err(message)``."""


def _lift_string(val: Any) -> str:
    s = val.of.string
    return string_at(s.data, s.size).decode("utf-8") if s.size else ""


def _lift_bytes(val: Any) -> bytes:
    s = val.of.string
    return string_at(s.data, s.size) if s.size else b""


def make_caller(func: "Func", store: Any, raw: bool = False) -> Optional[Callable[..., Any]]:
    """A fast callable for ``func`` if its type is (string | u32)* -> string | result<string,
    string>; None otherwise. The callable raises `CallError` for ``err``, `WasmtimeError` for
    traps. It does not lock: callers serialize access to the store.

    With ``raw`` the answer is the string's UTF-8 ``bytes``, undecoded: for request bodies,
    which go to the network as bytes anyway (decoding and re-encoding megabytes is waste)."""
    if not AVAILABLE:
        return None
    try:
        fty = func.type(store)
        kinds = []
        for _name, ty in fty.params:
            if isinstance(ty, String):
                kinds.append(_STRING)
            elif isinstance(ty, U32):
                kinds.append(_U32)
            else:
                return None
        result = fty.result
        if isinstance(result, String):
            is_result = False
        elif isinstance(result, ResultType) and isinstance(result.ok, String) and isinstance(result.err, String):
            is_result = True
        else:
            return None
    except Exception:
        return None

    n = len(kinds)
    lift = _lift_bytes if raw else _lift_string
    func_ref = byref(func._func)
    context = store._context

    def call(*args: Any) -> str:
        params = (_VAL * n)()
        lowered = 0
        out = _VAL()
        try:
            for i, kind in enumerate(kinds):
                p = params[i]
                if kind == _STRING:
                    data = args[i].encode("utf-8")
                    _vec_new(byref(p.of.string), len(data), ctypes.cast(data, POINTER(c_uint8)))
                    p.kind = _STRING
                else:
                    p.kind = _U32
                    p.of.u32 = args[i]
                lowered += 1
            ctx = context()
            error = _call(func_ref, ctx, params, n, byref(out), 1)
            if error:
                exc = WasmtimeError._from_ptr(error)
                maybe_raise_last_exn()
                raise exc
            try:
                if not is_result:
                    return lift(out)
                r = out.of.result
                if not r.is_ok:
                    raise CallError(_lift_string(r.val.contents))
                return lift(r.val.contents)
            finally:
                _val_delete(byref(out))
                error = _post_return(func_ref, context())
                if error:
                    raise WasmtimeError._from_ptr(error)
        finally:
            for i in range(lowered):
                _val_delete(byref(params[i]))

    return call


