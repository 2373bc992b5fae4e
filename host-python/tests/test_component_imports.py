"""The sandbox, checked: the component imports only what Rust's standard library needs on
wasm32-wasip2 (streams and the CLI world it links, a random seed for its hash maps), nothing
that reaches the file system, sockets, HTTP or clocks. (The host links those few with an empty
WASI configuration: no environment, arguments, directories or network; `_core.CoreInstance`.)

The imports are read from the built component by wasmtime's own component reader (the same
library that runs it) rather than a separate tool."""

from __future__ import annotations

import re

from raceway._core import Runtime

ALLOWED = {
    "wasi:io/poll", "wasi:io/error", "wasi:io/streams",
    "wasi:cli/environment", "wasi:cli/exit", "wasi:cli/stdin", "wasi:cli/stdout", "wasi:cli/stderr",
    "wasi:cli/terminal-input", "wasi:cli/terminal-output", "wasi:cli/terminal-stdin",
    "wasi:cli/terminal-stdout", "wasi:cli/terminal-stderr",
    "wasi:random/insecure-seed",
}
"""What Rust's std links on wasm32-wasip2 for a library that never opens a file, a socket or a
clock: the CLI world's streams, environment and exit, and a seed for `HashMap`'s hasher."""

FORBIDDEN = re.compile(r"^wasi:(filesystem|sockets|http|clocks|random/random)/|^wasi:cli/run")


def imports() -> set:
    runtime = Runtime.shared()
    names = runtime.component.type.imports(runtime.engine)
    return {name.split("@")[0] for name in names}


def test_the_component_imports_nothing_beyond_what_std_needs():
    found = imports()
    assert found <= ALLOWED, f"new imports: {sorted(found - ALLOWED)}"
    assert not [n for n in found if FORBIDDEN.search(n)]
    assert "wasi:random/insecure-seed" in found  # the list is read, not empty by accident
