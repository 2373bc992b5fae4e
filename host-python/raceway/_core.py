"""The boundary to the Rust core: the only module that knows the component exists.

Each `CoreInstance` is one wasmtime Store with one instance of the component, behind a lock
(a Store is not thread-safe). The client keeps two: one for header codecs called on
application threads, one for batch encoding on the flusher thread, so a long batch never
makes a request wait. Calls take and return JSON text (see ``wit/raceway.wit``).

The component runs with an empty WASI configuration: no files, no environment, no arguments,
no sockets. It can compute and nothing else. Each instance's memory is capped (`Limits.memory`)
and each call has a fuel budget proportional to its input (`Limits.fuel_base`,
`Limits.fuel_per_char`), so a runaway core traps instead of eating RAM or spinning forever.
A trap (out of fuel, out of memory, a panic) poisons the instance: it raises `CoreTrap` and
calls its ``on_trap`` callback once, and every later call raises `CoreTrap` without entering
the component. The client turns that into "log once, become a no-op" (docs/delivery.md).

Fuel, not epoch interruption: both cost about the same per call (measured in docs/delivery.md),
but epochs need a ticker thread in every process (restarted after fork) while fuel is a counter
in the store.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import threading
import zlib
from dataclasses import dataclass
from json.encoder import encode_basestring_ascii as _quote
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Set, Tuple, cast

import wasmtime
from wasmtime import Engine, Store, WasiConfig, WasmtimeError
from wasmtime.component import Component, Linker

from ._core_types import (
    DetectorOptionsJSON,
    EncodedBatch,
    FindingsJSON,
    IncomingJSON,
    IncomingTemplateJSON,
    OutgoingRequestJSON,
    OutgoingTemplateJSON,
    ProcessConfigJSON,
)
from ._fastcall import CallError, make_caller, make_fuel_setter

log = logging.getLogger("raceway")

WASM_NAME = "raceway_core.wasm"
PROPAGATION = "raceway:core/propagation@0.1.0"
PIPELINE = "raceway:core/pipeline@0.1.0"
DETECTOR = "raceway:core/detector@0.1.0"
MEMORY_LIMIT = 256 * 1024 * 1024
"""Bytes of linear memory one instance may grow to: a runaway core traps instead of eating RAM."""


@dataclass
class Limits:
    """The sandbox's bounds. The defaults leave a wide margin over what real input needs (the
    most measured is ~250 fuel per input character, for batches of tiny events); tests shrink
    them (`raceway.testing.core_limits`) to make the real component trap."""

    memory: int = MEMORY_LIMIT
    """Bytes of linear memory per instance; read when an instance is made."""
    fuel_base: int = 20_000_000
    """Fuel every call gets (roughly instructions; ~10-50 ms of work)."""
    fuel_per_char: int = 2_000
    """Fuel per character of the call's string arguments, on top of ``fuel_base``."""


LIMITS = Limits()

OBSERVE_FUEL_FACTOR = 4
"""`CoreInstance.observe`'s budget, in multiples of the size-based one (`Limits`)."""

RACES_FUEL = 2_000_000_000
"""Fuel for `CoreInstance.races`: its answer can be megabytes (900 races with two accesses,
four-frame stacks and values measured 1.3 MB for 50M fuel, ~40 per byte; `max_races` 1,000 with
the longest values and stacks stays far below this), past what `Limits.fuel_base` allows."""


EMPTY_PICKLE = pickle.dumps({"contexts": [], "states": [], "events": []}, 5).decode("latin-1")
"""An empty batch in the pickle form (docs/record-format.md), as the host passes it: one
character per byte."""

PROBES: Tuple[Tuple[str, Tuple[Any, ...]], ...] = (
    ("parse-incoming", ('{"traceparent":["00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"]}',)),
    (
        "encode-outgoing",
        (
            '{"trace_id":"0af76519-16cd-43dd-8448-eb211c80319c","span_id":"5ca1b17ca84ca5e5",'
            '"parent_span_id":"b7ad6b7169203331","service":"s","instance":"i",'
            '"clock":[["s#i/1",2]],"component":"s#i/1"}',
        ),
    ),
    ("encode-outgoing", ("not json",)),
    (
        "outgoing-template",
        (
            '{"trace_id":"0af76519-16cd-43dd-8448-eb211c80319c","parent_span_id":"b7ad6b7169203331",'
            '"service":"s","instance":"i","component":"s#i/1","clock":[]}',
        ),
    ),
    ("incoming-template", ()),
    ("encode-batch", ('{"contexts":[],"states":[],"events":[]}', 50)),
    ("observe", ('{"contexts":[],"states":[],"events":[]}', 0)),
    ("encode-batch-pickle", (EMPTY_PICKLE, 50)),
    ("encode-batch-pickle", ("not a pickle", 50)),
    ("observe-pickle", (EMPTY_PICKLE, 0)),
    ("races", ()),
)
"""Inputs for checking the direct caller against the public API (`CoreInstance`): each changes
no state of the instance (an empty batch, a read of the findings), and between them they cover
every kind of answer: a string, an ``ok`` result, an ``err`` result, bytes."""

BODIES = ("encode-batch", "observe", "encode-batch-pickle", "observe-pickle")
"""The calls that answer request bodies: kept as ``bytes`` (see `encode_batch`)."""

HOLD_GIL = ("parse-incoming", "encode-outgoing", "outgoing-template", "incoming-template")
"""The calls that keep the GIL (for inputs up to `raceway._fastcall.HOLD_GIL_MAX_BYTES`): the
header codecs, a few microseconds each, made on application threads per request or per
outgoing call. Releasing the GIL for them hands it to the sender whenever it is waiting for
it (busy encoding), and the request then waits to get it back: measured in `make bench`'s
ASGI row with headers read by the core, 79 µs per request releasing, 54 µs keeping it (with
the request path's other release, `os.urandom` for a context's ids, taken out; with it, both
79 µs: one release per request costs the wait). Every other call (batches, the detector,
reading races: up to milliseconds, on the sender's thread) releases it, so the application
runs beside them."""

_said: Set[str] = set()


def _say_once(key: str, msg: str, *args: Any) -> None:
    if key not in _said:
        _said.add(key)
        log.warning(msg, *args)


class CoreError(Exception):
    """The core refused a call (bad input) or failed (a trap, a missing component)."""


class CoreTrap(CoreError):
    """The core failed (trapped, ran out of fuel or memory, or an earlier call did): this
    instance cannot be used any more."""


_decode = json.JSONDecoder().raw_decode
"""The core writes compact JSON: no whitespace to skip around it, as `json.loads` does."""


def _headers_json(headers: Dict[str, List[str]]) -> str:
    """``{"name":["value",...],...}``. It runs once per traced request; `json.dumps` spends
    ~2 µs setting up its encoder for these few strings, this ~1 µs."""
    try:
        parts = []
        for name, values in headers.items():
            parts.append(f"{_quote(name)}:[{','.join(map(_quote, values))}]")
        return "{" + ",".join(parts) + "}"
    except TypeError:  # not all str: json says what is wrong with it
        return json.dumps(headers)


def wasm_bytes() -> bytes:
    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "_wasm", WASM_NAME), "rb") as f:
        return f.read()


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "raceway"


def cache_path(wasm: bytes) -> Path:
    # A checksum, not a cryptographic hash: the cache is the user's own directory (whoever can
    # write there can already run code as the user), and hashlib costs milliseconds to import.
    key = f"{zlib.crc32(wasm):08x}{len(wasm):x}"
    return cache_dir() / f"core-{key}-wasmtime-{_wasmtime_identity()}-fuel-explicit-traps.bin"


def _wasmtime_identity() -> str:
    """Compiled code is only valid for the wasmtime library that made it: that library file's
    size and modification time name it (reading package metadata instead costs ~10 ms)."""
    try:
        from wasmtime import _ffi

        st = os.stat(_ffi.filename)
        return f"{st.st_size:x}-{st.st_mtime_ns:x}"
    except Exception:  # pragma: no cover - another wasmtime-py layout
        try:
            from importlib.metadata import version

            return version("wasmtime")
        except Exception:
            return "unknown"


class Runtime:
    """The compiled component and what instantiating it needs; shared by all instances."""

    _lock = threading.Lock()
    _shared: Optional["Runtime"] = None

    def __init__(self, wasm: Optional[bytes] = None, use_cache: bool = True):
        config = wasmtime.Config()
        config.consume_fuel = True  # the bound on how long one call may run
        # Traps are explicit checks in the compiled code, not signal handlers: a process that
        # installs its own handlers later (`faulthandler.enable()`, pytest's faulthandler, a
        # crash reporter) would otherwise turn a trapping core from a contained error into a
        # crash of the application (SIGILL/SIGSEGV). Costs bounds checks on memory accesses.
        config.signals_based_traps = False
        self.engine = Engine(config)
        wasm = wasm if wasm is not None else wasm_bytes()
        self.component, self.from_cache = self._load(wasm, use_cache)
        self.linker = Linker(self.engine)
        self.linker.add_wasip2()

    @classmethod
    def shared(cls) -> "Runtime":
        """One runtime per process (compiling is the slow part of start-up)."""
        with cls._lock:
            if cls._shared is None:
                cls._shared = cls()
            return cls._shared

    def _load(self, wasm: bytes, use_cache: bool) -> Tuple[Component, bool]:
        """Deserializes the cached compilation when there is a good one, else compiles and tries
        to cache. A stale, corrupt or unwritable cache only costs the compile time."""
        path = cache_path(wasm)
        if use_cache and path.is_file():
            try:
                return Component.deserialize_file(self.engine, str(path)), True
            except Exception as e:  # stale or corrupt: recompile below
                log.debug("raceway: ignoring compiled-component cache %s: %s", path, e)
        component = Component(self.engine, wasm)
        if use_cache:
            try:
                import tempfile

                path.parent.mkdir(parents=True, exist_ok=True)
                fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".core-")
                with os.fdopen(fd, "wb") as f:
                    f.write(component.serialize())
                os.replace(tmp, path)
            except OSError as e:
                log.debug("raceway: cannot write compiled-component cache %s: %s", path, e)
        return component, False


def _reset_after_fork() -> None:
    """A lock copied into a forked child may be held by a thread that does not exist there."""
    Runtime._lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)


class CoreInstance:
    """One sandboxed instance of the core. Thread-safe: calls are serialized by a lock.

    ``on_trap`` is called once, with the exception, on the thread whose call trapped, before
    any other call can see the failure."""

    def __init__(self, runtime: Optional[Runtime] = None, on_trap: Optional[Callable[[BaseException], None]] = None):
        self.runtime = runtime or Runtime.shared()
        self.on_trap = on_trap
        self.failure: Optional[str] = None
        """Why the instance is unusable, once it is."""
        self._lock = threading.Lock()
        self._store = Store(self.runtime.engine)
        self._store.set_wasi(WasiConfig())
        self._store.set_limits(memory_size=LIMITS.memory)
        self._store.set_fuel(LIMITS.fuel_base)
        instance = self.runtime.linker.instantiate(self._store, self.runtime.component)
        self._funcs: Dict[str, Any] = {}
        self._fast: Dict[str, Any] = {}
        for iface, names in (
            (PROPAGATION, ("parse-incoming", "encode-outgoing", "outgoing-template", "incoming-template")),
            (PIPELINE, ("configure", "encode-batch", "encode-batch-pickle")),
            (DETECTOR, ("reset-detector", "observe", "observe-pickle", "races")),
        ):
            iface_index = instance.get_export_index(self._store, iface)
            if iface_index is None:
                raise CoreError(f"component does not export {iface}")
            for name in names:
                index = instance.get_export_index(self._store, name, iface_index)
                func = instance.get_func(self._store, index) if index is not None else None
                if func is None:
                    raise CoreError(f"component does not export {iface}#{name}")
                self._funcs[name] = func
                # Bodies stay bytes: they go to the network as bytes (see encode_batch).
                self._fast[name] = make_caller(func, self._store, raw=name in BODIES, hold_gil=name in HOLD_GIL)
        self._set_fuel: Callable[[int], None] = make_fuel_setter(self._store) or self._store.set_fuel
        self._check_direct_calls()

    def _check_direct_calls(self) -> None:
        """The direct caller (`_fastcall`) reads wasmtime's C structures through private parts
        of wasmtime-py: a changed layout would give wrong answers or crash instead of raising.
        So once per instance, before any real call, every function it serves answers a probe
        both ways (`PROBES`, inputs that change no state), and any difference, or any error of
        the direct way, turns it off for this instance: the public API serves every call,
        slower but safe. Said once at WARNING."""
        for name, args in PROBES:
            fast = self._fast.get(name)
            if fast is None:
                continue
            try:
                public = self._probe(self._call_public, name, args)
                direct = self._probe(self._call, name, args)
            except CoreTrap:
                raise
            except Exception as e:  # the direct way itself broke
                direct, public = f"raised {type(e).__name__}: {e}", None
            if direct != public:
                self._fast = dict.fromkeys(self._fast)
                _say_once(
                    "fastcall",
                    "raceway: the direct component calls disagree with wasmtime-py's API (%s: %.200r vs %.200r); "
                    "using the API (slower)",
                    name,
                    direct,
                    public,
                )
                return

    @staticmethod
    def _probe(call: Callable[..., Any], name: str, args: Tuple[Any, ...]) -> Any:
        try:
            answer = call(name, *args)
        except CoreTrap:
            raise
        except CoreError as e:
            return f"refused: {e}"
        return answer.decode("utf-8") if isinstance(answer, bytes) else answer

    @staticmethod
    def _fuel(args: Tuple[Any, ...]) -> int:
        """This call's budget: a base, plus an allowance per character of input."""
        size = 0
        for a in args:
            if isinstance(a, str):
                size += len(a)
        return LIMITS.fuel_base + LIMITS.fuel_per_char * size

    def _call(self, name: str, *args: Any, fuel: Optional[int] = None) -> Any:
        """Calls ``name`` with a fuel budget of ``fuel`` (default: by the input's size)."""
        fast = self._fast[name]
        if fast is None:
            return self._call_public(name, *args, fuel=fuel)
        with self._lock:
            if self.failure is not None:
                raise CoreTrap(f"core is off after an earlier failure: {self.failure}")
            try:
                self._set_fuel(fuel if fuel is not None else self._fuel(args))
                return fast(*args)
            except CallError as e:
                raise CoreError(f"core refused {name}: {e}") from None
            except (WasmtimeError, wasmtime.Trap) as e:  # a trap: out of fuel or memory, a panic
                raise self._trapped(name, e) from None
            except Exception as e:  # the host could not pass the arguments
                raise CoreError(f"core call {name} failed: {type(e).__name__}: {e}") from e

    def _call_public(self, name: str, *args: Any, fuel: Optional[int] = None) -> Any:
        """wasmtime-py's own calling path: the fallback, and the reference in tests."""
        func = self._funcs[name]
        with self._lock:
            if self.failure is not None:
                raise CoreTrap(f"core is off after an earlier failure: {self.failure}")
            try:
                self._store.set_fuel(fuel if fuel is not None else self._fuel(args))
                result = func(self._store, *args)
                func.post_return(self._store)
            except (WasmtimeError, wasmtime.Trap) as e:
                raise self._trapped(name, e) from None
            except Exception as e:  # the host could not pass the arguments
                raise CoreError(f"core call {name} failed: {type(e).__name__}: {e}") from e
        if isinstance(result, wasmtime.component.Variant):
            if result.tag == "err":
                raise CoreError(f"core refused {name}: {result.payload}")
            return result.payload
        return result

    def _trapped(self, name: str, error: BaseException) -> CoreTrap:
        """Tells the owner (`_notify`), then marks the instance unusable (a trapped instance
        refuses every later call anyway); with the lock held. The message keeps wasmtime's
        cause (its last line), not the wasm backtrace."""
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        failure = f"{name}: {lines[-1] if lines else type(error).__name__}"
        trap = CoreTrap(f"core call {failure}")
        self._notify(trap)
        self.failure = failure
        return trap

    def _notify(self, trap: CoreTrap) -> None:
        """Tells the owner, once. Runs with the lock held, before `failure` is set, which calls
        read only with the lock held: no other caller can see the failure before the owner has
        reacted (the client must log one error, not two). The handler must not call this
        instance."""
        callback, self.on_trap = self.on_trap, None
        if callback is not None:
            try:
                callback(trap)
            except Exception:  # pragma: no cover - the owner's handler must not make it worse
                log.debug("raceway: on_trap handler failed", exc_info=True)

    def hold(self, timeout: float) -> bool:
        """Waits until no call is running and keeps others out (before ``os.fork()``, so the
        child's copy of the store is never mid-call). Pair with `release`."""
        return self._lock.acquire(timeout=timeout)

    def release(self) -> None:
        self._lock.release()

    # -- propagation ---------------------------------------------------------------------------
    def parse_incoming(self, headers: Dict[str, List[str]]) -> IncomingJSON:
        """``headers``: each trace header's values, as `_incoming.gather` makes them."""
        return cast(IncomingJSON, _decode(self._call("parse-incoming", _headers_json(headers)))[0])

    def encode_outgoing(self, request: "OutgoingRequestJSON | Mapping[str, Any] | str") -> Dict[str, str]:
        """Headers for one outgoing call; ``request`` is the JSON the WIT describes, or a dict."""
        if not isinstance(request, str):
            request = json.dumps(request)
        headers = {}
        for line in self._call("encode-outgoing", request).split("\n"):
            name, _, value = line.partition(": ")
            headers[name] = value
        return headers

    def outgoing_template(self, request: str) -> OutgoingTemplateJSON:
        """The templates of one context's outgoing headers (see the WIT's ``outgoing-template``
        and `raceway._headers.OutgoingTemplate`); ``request`` is its JSON."""
        return cast(OutgoingTemplateJSON, _decode(self._call("outgoing-template", request))[0])

    def incoming_template(self) -> IncomingTemplateJSON:
        """The strict shapes of canonical incoming headers (see the WIT's ``incoming-template``
        and `raceway._headers.IncomingTemplate`). The same for every call of a core build."""
        return cast(IncomingTemplateJSON, _decode(self._call("incoming-template"))[0])

    # -- pipeline ------------------------------------------------------------------------------
    def configure(self, config: "ProcessConfigJSON | Mapping[str, Any]") -> None:
        self._call("configure", json.dumps(config))

    def encode_batch(self, records: str, max_events_per_body: int) -> EncodedBatch:
        """The component answers a summary line, then the bodies verbatim, one per line (see
        the WIT); this returns the summary with ``bodies`` added: the list of bodies, each
        UTF-8 ``bytes``."""
        return self._bodies(self._call("encode-batch", records, max_events_per_body))

    def encode_batch_pickle(self, records: str, max_events_per_body: int) -> EncodedBatch:
        """`encode_batch` for the batch in the pickle form (`_records.encode_pickle`: the
        pickle's bytes, one character each). Raises `CoreError` when the core does not read
        this pickle; the caller then sends the JSON form (the answer would have been the same)."""
        fuel = 3 * self._fuel((records,))
        return self._bodies(self._call("encode-batch-pickle", records, max_events_per_body, fuel=fuel))

    # -- detector ------------------------------------------------------------------------------
    def reset_detector(self, options: "DetectorOptionsJSON | Mapping[str, Any]") -> None:
        """Starts this instance's detector afresh with ``options`` (docs/races.md: bounds)."""
        self._call("reset-detector", json.dumps(options))

    def observe(self, records: str, max_events_per_body: int) -> EncodedBatch:
        """Feeds a batch to the detector; with ``max_events_per_body`` > 0 also encodes it, and
        answers as `encode_batch` does (``bodies`` empty when 0)."""
        # Detection does more per character than encoding (clocks, and now and then a sweep
        # that releases old strands or variables): four times the encoder's budget.
        fuel = OBSERVE_FUEL_FACTOR * self._fuel((records,))
        return self._bodies(self._call("observe", records, max_events_per_body, fuel=fuel))

    def observe_pickle(self, records: str, max_events_per_body: int) -> EncodedBatch:
        """`observe` for the batch in the pickle form. Raises `CoreError`, with the detector
        having seen none of the batch, when the core does not read this pickle."""
        # A pickle is about a third of the batch's JSON (a memo index stands for a string
        # written before), and the work per record is the same: three times the JSON budget.
        fuel = 3 * OBSERVE_FUEL_FACTOR * self._fuel((records,))
        return self._bodies(self._call("observe-pickle", records, max_events_per_body, fuel=fuel))

    def races(self) -> FindingsJSON:
        """The detector's findings so far (`raceway._core_types.FindingsJSON`). The answer's size
        is not known beforehand (up to ``max_races`` races with their stacks and values): the
        call gets `RACES_FUEL`, a bound on work, not on what an answer may hold."""
        return cast(FindingsJSON, json.loads(self._call("races", fuel=RACES_FUEL)))

    @staticmethod
    def _bodies(answer: Any) -> EncodedBatch:
        if isinstance(answer, str):  # the public calling path decodes
            answer = answer.encode("utf-8")
        start = answer.find(b"\n") + 1
        summary = json.loads(answer[:start])
        # One body per count. `find` scans with memchr; `bytes.split` compares byte by byte,
        # which costs ~0.15 µs per event on these ~700-byte events.
        bodies = []
        find = answer.find
        for _ in summary["counts"]:
            end = find(b"\n", start)
            if end < 0:
                end = len(answer)
            bodies.append(answer[start:end])
            start = end + 1
        summary["bodies"] = bodies
        return cast(EncodedBatch, summary)
