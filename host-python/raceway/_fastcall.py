"""A direct caller for component functions whose values are strings (and u32s).

wasmtime-py's `Func.__call__` rebuilds the function's type description and its converters on
every call (~20 µs for one string in and a ``result<string, string>`` out). The C call itself
costs ~6 µs. Our WIT only passes strings and u32s, so for those shapes this module lowers and
lifts values itself from the C structures, with the type checked once when the caller is made.

Holding the GIL: wasmtime-py calls C through ``ctypes.CDLL``, which releases the GIL for every
call. For a call of a few microseconds on an application thread (a header codec) the release
only offers the GIL to another thread busy in Python (the client's sender, encoding), and the
caller then waits for it to come back. So this module binds the same C functions twice:
through ``CDLL`` (releases the GIL: for calls that may run long, so the application runs
beside them) and through ``PyDLL`` of the same library (keeps the GIL for the call). A caller
made with ``hold_gil`` uses the second for inputs up to `HOLD_GIL_MAX_BYTES` bytes, the first
for larger ones; the small bookkeeping calls (lowering a string, freeing a value, post-return,
setting fuel) always keep it. Holding the GIL is safe here: the component imports only WASI,
implemented in Rust, so no call re-enters Python, and a trap comes back as an error value
(traps are explicit checks, not signals: `raceway._core.Runtime`).

It uses wasmtime-py's ctypes bindings (``wasmtime._ffi``), which are not a public API; the
wasmtime major version is pinned for that reason, `make_caller` returns None when anything it
relies on is missing or the function's type is not one it handles, and `_core` then uses the
public path. tests/test_fastcall.py checks both paths give the same answers.
"""

from __future__ import annotations

import ctypes
from ctypes import POINTER, addressof, c_char_p, c_size_t, c_uint64, c_void_p, cast, string_at
from typing import Any, Callable, Optional

try:
    from wasmtime import WasmtimeError
    from wasmtime import _ffi as ffi
    from wasmtime.component import U32, Func, ResultType, String
    from wasmtime.component._enter import maybe_raise_last_exn

    _VAL = ffi.wasmtime_component_val_t
    _STRING = ffi.WASMTIME_COMPONENT_STRING.value
    _U32 = ffi.WASMTIME_COMPONENT_U32.value
    _EMPTY = ffi.WASMTIME_COMPONENT_BOOL.value
    """A value with nothing to free. A reused value is set to it after each delete: writing a
    result into a value drops what it held first, which must not be freed twice."""
    _ERROR = POINTER(ffi.wasmtime_error_t)

    _HELD = ctypes.PyDLL(str(ffi.filename), handle=ffi.dll._handle)
    """The same loaded library (the same handle), through calls that keep the GIL."""

    def _prototype(dll: Any, name: str, restype: Any, *argtypes: Any) -> Any:
        # `dll[name]` makes a new function object, so these argtypes (plain addresses, and
        # bytes passed without a copy) leave wasmtime-py's own bindings untouched.
        f = dll[name]
        f.restype = restype
        f.argtypes = list(argtypes)
        return f

    _CALL_ARGS = (_ERROR, c_void_p, c_void_p, c_void_p, c_size_t, c_void_p, c_size_t)
    _call_released = _prototype(ffi.dll, "wasmtime_component_func_call", *_CALL_ARGS)
    _call_held = _prototype(_HELD, "wasmtime_component_func_call", *_CALL_ARGS)
    _post_return = _prototype(_HELD, "wasmtime_component_func_post_return", _ERROR, c_void_p, c_void_p)
    _val_delete = _prototype(_HELD, "wasmtime_component_val_delete", None, c_void_p)
    _vec_new = _prototype(_HELD, "wasm_byte_vec_new", None, c_void_p, c_size_t, c_char_p)
    _set_fuel = _prototype(_HELD, "wasmtime_context_set_fuel", _ERROR, c_void_p, c_uint64)
    AVAILABLE = True
except (ImportError, AttributeError, OSError):  # pragma: no cover - another wasmtime-py layout
    AVAILABLE = False

HOLD_GIL_MAX_BYTES = 16_384
"""A ``hold_gil`` caller keeps the GIL for inputs up to this many UTF-8 bytes in all: a header
codec's input (trace headers are a few hundred bytes; servers cap a header line at 8-16 KiB)
costs tens of microseconds at most. A larger input gets the releasing call: its own cost then
dwarfs the hand-off, and the application's other threads run meanwhile."""


class CallError(Exception):
    """The component answered ``err(message)``."""


def make_caller(func: "Func", store: Any, raw: bool = False, hold_gil: bool = False) -> Optional[Callable[..., Any]]:
    """A fast callable for ``func`` if its type is (string | u32)* -> string | result<string,
    string>; None otherwise. The callable raises `CallError` for ``err``, `WasmtimeError` for
    traps. It does not lock: callers serialize access to the store (the argument and result
    values are allocated once, here, and reused by every call).

    With ``raw`` the answer is the string's UTF-8 ``bytes``, undecoded: for request bodies,
    which go to the network as bytes anyway (decoding and re-encoding megabytes is waste).
    With ``hold_gil`` the call keeps the GIL when its string arguments come to at most
    `HOLD_GIL_MAX_BYTES` bytes (see the module docstring): for short calls on application
    threads. Without it the GIL is released for the call."""
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
        context = cast(store._context(), c_void_p).value  # the store's context: fixed for its life
    except Exception:
        return None

    # Everything a call touches is allocated once; the C functions get plain addresses.
    # (Each ctypes struct view, `byref` and wrapper call costs ~0.1-1 µs, per call.)
    n = len(kinds)
    params = (_VAL * n)()
    out = _VAL()
    func_struct = func._func  # kept alive by this closure, so its address stays valid
    func_at = addressof(func_struct)
    params_at = addressof(params)
    out_at = addressof(out)
    size = ctypes.sizeof(_VAL)
    slots = [(kind, params[i], params[i].of, params_at + i * size) for i, kind in enumerate(kinds)]
    string_offset = type(out).of.offset + type(out.of).string.offset  # of a string in a value
    out_string = out.of.string
    out_result = out.of.result

    def call(*args: Any) -> Any:
        if len(args) != n:
            raise TypeError(f"expected {n} arguments, got {len(args)}")
        lowered = 0
        size_in = 0
        try:
            for (kind, val, union, at), arg in zip(slots, args, strict=True):  # lengths checked above
                val.kind = kind
                if kind == _STRING:
                    data = arg.encode("utf-8")
                    size_in += len(data)
                    _vec_new(at + string_offset, len(data), data)
                else:
                    union.u32 = arg
                lowered += 1
            fn = _call_held if hold_gil and size_in <= HOLD_GIL_MAX_BYTES else _call_released
            error = fn(func_at, context, params_at, n, out_at, 1)
            if error:
                exc = WasmtimeError._from_ptr(error)
                maybe_raise_last_exn()
                raise exc
            try:
                answer = out_result.val.contents.of.string if is_result else out_string
                data = string_at(answer.data, answer.size) if answer.size else b""
                if is_result and not out_result.is_ok:
                    raise CallError(data.decode("utf-8"))
                return data if raw else data.decode("utf-8")
            finally:
                _val_delete(out_at)
                out.kind = _EMPTY
                error = _post_return(func_at, context)
                if error:
                    raise WasmtimeError._from_ptr(error)
        finally:
            for _kind, val, _union, at in slots[:lowered]:
                _val_delete(at)
                val.kind = _EMPTY

    call.keepalive = (params, out, func_struct)  # type: ignore[attr-defined]
    return call


def make_fuel_setter(store: Any) -> Optional[Callable[[int], None]]:
    """``set(fuel)`` for ``store``, as ``Store.set_fuel`` but keeping the GIL (see the module
    docstring); raises `WasmtimeError` as it does (a store without fuel). None when this
    wasmtime-py's layout is not the one this module knows."""
    if not AVAILABLE:
        return None
    try:
        context = cast(store._context(), c_void_p).value
    except Exception:
        return None

    def set_fuel(fuel: int) -> None:
        error = _set_fuel(context, fuel)
        if error:
            raise WasmtimeError._from_ptr(error)

    set_fuel.keepalive = store  # type: ignore[attr-defined]
    return set_fuel
