"""Replacing a library's method with ours, and putting the original back.

A wrapper is installed once per (class, name) however often instrumentation is switched on,
and it is marked with the function it replaced. Switching off restores the original where our
wrapper is still in place; where another tool wrapped the method after us, our wrapper stays
under theirs, inert (every wrapper goes straight to the original while no instrumentation is
active), so their wrapper keeps working.
"""

from __future__ import annotations

import functools
import threading
from typing import Any, Callable, List, Tuple

MARK = "__raceway_original__"

_installed: List[Tuple[type, str, Callable[..., Any]]] = []
lock = threading.RLock()


def wrap(owner: type, name: str, make: Callable[[Callable[..., Any]], Callable[..., Any]]) -> None:
    """Replaces ``owner.name`` (defined on ``owner`` itself) by ``make(original)``, unless our
    wrapper is already there (itself, or under another tool's wrapper that copied its
    attributes, as ``functools.wraps`` does)."""
    with lock:
        current = owner.__dict__.get(name)
        if current is None or getattr(current, MARK, None) is not None:
            return
        wrapper = make(current)
        functools.update_wrapper(wrapper, current)
        setattr(wrapper, MARK, current)
        setattr(owner, name, wrapper)
        _installed.append((owner, name, wrapper))


def unwrap_all() -> None:
    """Puts back every original method whose attribute still holds our wrapper (ours, by
    identity: another tool's wrapper on top of it is left in place, ours inert under it)."""
    with lock:
        for owner, name, wrapper in reversed(_installed):
            if owner.__dict__.get(name) is wrapper:
                setattr(owner, name, getattr(wrapper, MARK))
        _installed.clear()


def installed() -> List[Tuple[type, str]]:
    with lock:
        return [(owner, name) for owner, name, _ in _installed]
