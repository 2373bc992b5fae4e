"""The boundary to the Rust core: the only module that knows the component exists.

Each `CoreInstance` is one wasmtime Store with one instance of the component, behind a lock
(a Store is not thread-safe). The client keeps two: one for header codecs called on
application threads, one for batch encoding on the flusher thread, so a long batch never
makes a request wait. Calls take and return JSON text (see ``wit/raceway.wit``).

The component runs with an empty WASI configuration: no files, no environment, no arguments,
no sockets. It can compute and nothing else.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import threading
from importlib import resources
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import wasmtime
from wasmtime import Engine, Store, WasiConfig
from wasmtime.component import Component, Linker

from ._fastcall import CallError, make_caller

log = logging.getLogger("raceway")

WASM_NAME = "raceway_core.wasm"
PROPAGATION = "raceway:core/propagation@0.1.0"
PIPELINE = "raceway:core/pipeline@0.1.0"
MEMORY_LIMIT = 256 * 1024 * 1024
"""Bytes of linear memory one instance may grow to: a runaway core traps instead of eating RAM."""


class CoreError(Exception):
    """The core refused a call (bad input) or failed (a trap, a missing component)."""


def wasm_bytes() -> bytes:
    return resources.files("raceway").joinpath("_wasm", WASM_NAME).read_bytes()


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "raceway"


def _cache_path(wasm: bytes) -> Path:
    key = hashlib.sha256(wasm).hexdigest()[:24]
    return cache_dir() / f"core-{key}-wasmtime-{_wasmtime_version()}.bin"


def _wasmtime_version() -> str:
    """Compiled code is only valid for the wasmtime that made it: part of the cache key."""
    try:
        from importlib.metadata import version

        return version("wasmtime")
    except Exception:  # pragma: no cover
        return "unknown"


class Runtime:
    """The compiled component and what instantiating it needs; shared by all instances."""

    _lock = threading.Lock()
    _shared: Optional["Runtime"] = None

    def __init__(self, wasm: Optional[bytes] = None, use_cache: bool = True):
        self.engine = Engine()
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
        path = _cache_path(wasm)
        if use_cache and path.is_file():
            try:
                return Component.deserialize_file(self.engine, str(path)), True
            except Exception as e:  # stale or corrupt: recompile below
                log.debug("raceway: ignoring compiled-component cache %s: %s", path, e)
        component = Component(self.engine, wasm)
        if use_cache:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".core-")
                with os.fdopen(fd, "wb") as f:
                    f.write(component.serialize())
                os.replace(tmp, path)
            except OSError as e:
                log.debug("raceway: cannot write compiled-component cache %s: %s", path, e)
        return component, False


class CoreInstance:
    """One sandboxed instance of the core. Thread-safe: calls are serialized by a lock."""

    def __init__(self, runtime: Optional[Runtime] = None):
        self.runtime = runtime or Runtime.shared()
        self._lock = threading.Lock()
        self._store = Store(self.runtime.engine)
        self._store.set_wasi(WasiConfig())
        self._store.set_limits(memory_size=MEMORY_LIMIT)
        instance = self.runtime.linker.instantiate(self._store, self.runtime.component)
        self._funcs: Dict[str, Any] = {}
        self._fast: Dict[str, Any] = {}
        for iface, names in (
            (PROPAGATION, ("parse-incoming", "encode-outgoing")),
            (PIPELINE, ("configure", "encode-batch")),
        ):
            iface_index = instance.get_export_index(self._store, iface)
            if iface_index is None:
                raise CoreError(f"component does not export {iface}")
            for name in names:
                func = instance.get_func(self._store, instance.get_export_index(self._store, name, iface_index))
                if func is None:
                    raise CoreError(f"component does not export {iface}#{name}")
                self._funcs[name] = func
                self._fast[name] = make_caller(func, self._store)

    def _call(self, name: str, *args: Any) -> Any:
        fast = self._fast[name]
        if fast is not None:
            with self._lock:
                try:
                    return fast(*args)
                except CallError as e:
                    raise CoreError(f"core refused {name}: {e}") from None
                except Exception as e:  # a trap, or wasmtime refusing the call
                    raise CoreError(f"core call {name} failed: {e}") from e
        return self._call_public(name, *args)

    def _call_public(self, name: str, *args: Any) -> Any:
        """wasmtime-py's own calling path: the fallback, and the reference in tests."""
        func = self._funcs[name]
        with self._lock:
            try:
                result = func(self._store, *args)
                func.post_return(self._store)
            except Exception as e:  # a trap, or wasmtime refusing the call
                raise CoreError(f"core call {name} failed: {e}") from e
        if isinstance(result, wasmtime.component.Variant):
            if result.tag == "err":
                raise CoreError(f"core refused {name}: {result.payload}")
            return result.payload
        return result

    # -- propagation ---------------------------------------------------------------------------
    def parse_incoming(self, headers: Dict[str, List[str]]) -> Dict[str, Any]:
        return json.loads(self._call("parse-incoming", json.dumps(headers)))

    def encode_outgoing(self, request: "Dict[str, Any] | str") -> Dict[str, str]:
        """Headers for one outgoing call; ``request`` is the JSON the WIT describes, or a dict."""
        if not isinstance(request, str):
            request = json.dumps(request)
        lines = self._call("encode-outgoing", request).split("\n")
        return dict(line.split(": ", 1) for line in lines)

    # -- pipeline ------------------------------------------------------------------------------
    def configure(self, config: Dict[str, Any]) -> None:
        self._call("configure", json.dumps(config))

    def encode_batch(self, records: str, max_events_per_body: int) -> Dict[str, Any]:
        """The component answers a summary line, then the bodies verbatim (see the WIT); this
        returns the summary with ``bodies`` added: the bodies joined by newlines."""
        head, _, bodies = self._call("encode-batch", records, max_events_per_body).partition("\n")
        summary = json.loads(head)
        summary["bodies"] = bodies
        return summary
