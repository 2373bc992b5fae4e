"""Where the user's code called us from, found by walking frames (never by formatting a stack).

A frame belongs to the SDK when its file lies inside this package's directory: matching the
directory, not the word "raceway", keeps user folders named ``raceway`` visible.

Call sites are cached. Reading ``frame.f_lineno`` walks the code's line table from its start:
~40 ns near the top of a function, over 1 µs three hundred lines down. A call site (a code
object and an instruction offset) always has the same file, line and module, so the hot path
looks them up and computes them once per site.

Two caches. `sites`, by ``(id(code), f_lasti)``, holds every user site seen. `by_offset`, by
``f_lasti`` alone, holds the last user site seen at each instruction offset, and is the one the
hot paths read first: an int key needs no ``id()`` call and no key tuple to build and hash, and
checking the entry's code object (``entry[3] is frame.f_code``) makes a hit exact. Two sites at
the same offset in different functions take turns in it, each miss costing the `sites` lookup
the hot paths did before (measured: ``track_state_change`` 1.15 -> 0.82 µs per call).
"""

from __future__ import annotations

import os
import sys
from types import CodeType, FrameType
from typing import Dict, List, Optional, Tuple

PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep
DEMO_DIR = PACKAGE_DIR + "demo" + os.sep
"""The bundled demo application is user code, though it ships inside the package."""

getframe = sys._getframe

Site = Tuple[str, int, str, object, str, Tuple[str, ...]]
"""``(file, line, module, code, frame, stack1)``, ``frame`` being ``file:line in function`` (a
stack frame of race reports) and ``stack1`` the one-frame stack ``(frame,)`` (the default
``race_stack_frames=1``, made once per site instead of once per event; ``()`` for `UNKNOWN`).
The entry holds its code object, so the id in its key cannot be reused by another code object
while the entry exists."""

sites: Dict[Tuple[int, int], Site] = {}
"""Call sites of user code by ``(id(code), f_lasti)``."""

by_offset: Dict[int, Site] = {}
"""The last user site seen at each ``f_lasti``: a hit is an entry whose code object is the
frame's own (``entry[3] is frame.f_code``). Written by `locate` only."""

MAX_SITES = 4096
"""Code compiled at run time (``exec``, template engines) could add sites without end, and each
entry keeps its code object alive: past this many the cache starts over. Real applications
call ``track_*`` from far fewer places."""

UNKNOWN: Site = ("<unknown>", 0, "app", None, "<unknown>:0 in <unknown>", ())


def is_sdk(filename: str) -> bool:
    """Whether a frame of ``filename`` is the SDK's own (the demo application is not)."""
    return filename.startswith(PACKAGE_DIR) and not filename.startswith(DEMO_DIR)


sdk_codes: Dict[int, CodeType] = {}
"""The SDK's own code objects met in frame walks, by id: a walk steps over their frames with
one lookup instead of two string comparisons. Each entry holds its code object, so its id
cannot be reused by user code while the entry exists; the SDK's code is finite, so this is
bounded by the size of the package."""


def user_frame(frame: Optional[FrameType]) -> Optional[FrameType]:
    """The first frame, from ``frame`` outwards, that is not the SDK's own."""
    while frame is not None:
        code = frame.f_code
        if id(code) in sdk_codes:
            frame = frame.f_back
        elif is_sdk(code.co_filename):
            sdk_codes[id(code)] = code
            frame = frame.f_back
        else:
            return frame
    return None


def site(frame: Optional[FrameType]) -> Site:
    """The call site of the first user frame from ``frame`` outwards (the slow path of the
    ``sites.get`` lookup the hot path does first). Only user frames are cached: an SDK frame's
    caller differs from call to call."""
    frame = user_frame(frame)
    if frame is None:
        return UNKNOWN
    key = (id(frame.f_code), frame.f_lasti)
    found = sites.get(key)
    if found is not None:
        return found
    code = frame.f_code
    line = frame.f_lineno or 0
    name = getattr(code, "co_qualname", code.co_name)
    module = frame.f_globals.get("__name__", "app")
    frame_text = f"{code.co_filename}:{line} in {name}"
    found = (code.co_filename, line, module, code, frame_text, (frame_text,))
    if len(sites) >= MAX_SITES:
        sites.clear()
        by_offset.clear()
    sites[key] = found
    return found


def locate(frame: FrameType) -> Site:
    """The call site of the first user frame from ``frame`` outwards, as `site`, remembered in
    `by_offset` when it is ``frame``'s own (an SDK frame's caller differs from call to call). The
    hot paths call it on a `by_offset` miss::

        where = by_offset.get(f.f_lasti)
        if where is None or where[3] is not f.f_code:
            where = locate(f)
    """
    found = site(frame)
    if found[3] is frame.f_code:
        by_offset[frame.f_lasti] = found
    return found


def stack(frame: Optional[FrameType], depth: int) -> Tuple[str, ...]:
    """Up to ``depth`` user frames from ``frame`` outwards, each ``file:line in function``,
    innermost first; the SDK's own frames are skipped. Each frame is a cached site, so this
    costs a frame step and a dictionary lookup per frame. It stops at the last frame it keeps:
    stepping past it would make Python build one more frame object (~0.25 µs) for nothing."""
    out: List[str] = []
    if depth <= 0:
        return ()
    get = sites.get
    while frame is not None:
        found = get((id(frame.f_code), frame.f_lasti))
        if found is None:
            if is_sdk(frame.f_code.co_filename):
                frame = frame.f_back
                continue
            found = site(frame)
        out.append(found[4])
        if len(out) == depth:
            break
        frame = frame.f_back
    return tuple(out)
