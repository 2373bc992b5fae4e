"""Formatting shared by the report writers: safe one-line text, compact values, race order.

Every string of a finding is untrusted (it comes from the observed program). `clean` makes any
string a bounded, single-line, printable text: control characters (C0, DEL, C1, so ANSI
escapes too), Unicode format characters (bidi overrides, zero-width marks) and line/paragraph
separators are shown as ``\\xNN`` / ``\\uNNNN`` escapes.
"""

from __future__ import annotations

import json
import re
import unicodedata
from typing import Any, Dict, Iterable, List, Optional, Tuple

from ..races import LOST_UPDATE, Access, Race

VALUE_LIMIT = 80
"""Characters of a value shown (after compaction); longer ones end in an ellipsis."""
TEXT_LIMIT = 200
"""Characters of a name, location, lock id or frame shown."""

_UNSAFE_CATEGORIES = {"Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"}
_SHORT_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
_LINE = re.compile(r"^(?P<file>.*):(?P<line>\d+)$")


def _escape_char(ch: str) -> str:
    if ch in _SHORT_ESCAPES:
        return _SHORT_ESCAPES[ch]
    code = ord(ch)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def clean(value: object, limit: int = TEXT_LIMIT) -> str:
    """`value` as printable single-line text of at most `limit` characters (plus ``…``).

    Non-strings go through ``str``. Unsafe characters are escaped (see the module doc), then
    the result is cut at `limit` characters with a ``…`` appended."""
    text = value if isinstance(value, str) else str(value)
    out: List[str] = []
    size = 0
    for ch in text:
        piece = _escape_char(ch) if unicodedata.category(ch) in _UNSAFE_CATEGORIES else ch
        out.append(piece)
        size += len(piece)
        if size > limit:
            break
    joined = "".join(out)
    if size > limit:
        return joined[:limit] + "…"
    return joined


def compact(value: Any, limit: int = VALUE_LIMIT) -> str:
    """A JSON value shown compactly: ``null``, ``100``, ``"abc"``, ``{"a":1}``; bounded and
    cleaned like `clean` (a string keeps its quotes so ``"1"`` and ``1`` differ)."""
    try:
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, sort_keys=True, default=repr)
    except (TypeError, ValueError, RecursionError):
        text = repr(value)
    return clean(text, limit)


def is_read(access: Access) -> bool:
    return access.access_type in ("Read", "AtomicRead")


def is_write(access: Access) -> bool:
    return not is_read(access)


def value_seen(access: Access) -> str:
    """What the access read or wrote, compact: ``100`` for a read, ``100 -> 150`` for a write."""
    if is_read(access):
        seen = access.new_value if access.new_value is not None else access.old_value
        return compact(seen)
    if access.old_value is None:
        return compact(access.new_value)
    return f"{compact(access.old_value)} -> {compact(access.new_value)}"


def split_location(location: str) -> Tuple[str, Optional[int]]:
    """``"app.py:12"`` -> ``("app.py", 12)``; without a numeric line part -> ``(location, None)``."""
    m = _LINE.match(location)
    if m is None:
        return location, None
    return m.group("file"), int(m.group("line"))


def frame_location(frame: str) -> str:
    """The ``file:line`` of a ``file:line in function`` stack frame (the frame if no `` in ``)."""
    head, sep, _ = frame.rpartition(" in ")
    return head if sep else frame


def frame_function(frame: str) -> str:
    head, sep, tail = frame.rpartition(" in ")
    return tail if sep else ""


def strand_of(access: Access) -> str:
    """The strand's identity used to group accesses: its component, else its thread id."""
    return access.component or access.thread_id


def strand_letters(race: Race) -> Dict[str, str]:
    """``{strand: "A" | "B" | ...}`` in the order the accesses name them."""
    letters: Dict[str, str] = {}
    for access in race.accesses:
        key = strand_of(access)
        if key not in letters:
            letters[key] = chr(ord("A") + len(letters)) if len(letters) < 26 else f"S{len(letters)}"
    return letters


def _group(race: Race) -> int:
    if race.kind == LOST_UPDATE:
        return 0
    return 1 if race.severity == "CRITICAL" else 2


def ordered(races: Iterable[Race]) -> List[Race]:
    """Lost updates first, then CRITICAL, then WARNING; most frequent first within a group."""
    return sorted(races, key=lambda r: (_group(r), -r.count, r.first_seen, r.variable))


def headline(race: Race) -> str:
    """``CRITICAL: LOST UPDATE`` / ``CRITICAL: DATA RACE`` / ``WARNING: DATA RACE``."""
    what = "LOST UPDATE" if race.kind == LOST_UPDATE else "DATA RACE"
    return f"{clean(race.severity, 20)}: {what}"


def summary(races: List[Race], suppressed: int = 0) -> str:
    """``3 races (1 lost update, 1 critical data race, 1 warning); 2 suppressed``."""
    lost = sum(1 for r in races if r.kind == LOST_UPDATE)
    critical = sum(1 for r in races if r.kind != LOST_UPDATE and r.severity == "CRITICAL")
    warning = len(races) - lost - critical
    parts = []
    if lost:
        parts.append(f"{lost} lost update{'s' if lost != 1 else ''}")
    if critical:
        parts.append(f"{critical} critical data race{'s' if critical != 1 else ''}")
    if warning:
        parts.append(f"{warning} warning{'s' if warning != 1 else ''}")
    text = f"{len(races)} race{'s' if len(races) != 1 else ''}"
    if parts:
        text += " (" + ", ".join(parts) + ")"
    if suppressed:
        text += f"; {suppressed} suppressed"
    return text
