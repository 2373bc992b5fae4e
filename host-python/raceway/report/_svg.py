"""Draws a `_timeline.Timeline` as inline SVG: lanes, marks, edges, the missing ordering.

One lane per strand (context lanes of parents on top), events as marks in time order (the
spacing is by order, not to scale; racing columns are widened to fit their labels), the racing
accesses as big red marks, happens-before edges as green arrows, and the ordering the race
lacked as a red dashed line with a label. Every text is cleaned (`_format.clean`) and then
escaped with `html.escape`; numbers are formatted here; nothing from the data reaches an
attribute other than through `html.escape`.
"""

from __future__ import annotations

import html
import math
from datetime import datetime, timezone
from typing import Dict, List, Optional, Tuple

from ..races import LOST_UPDATE, Race
from . import _explain
from ._format import clean, split_location, strand_letters, strand_of, value_seen
from ._timeline import Mark, Timeline, access_letter, describe

LABEL_W = 210
ROW_H = 96
TOP = 30
BOTTOM = 58
CHAR_W = 6.4
"""Approximate width of a character of the 11px labels, to size columns and boxes."""
BOLD_W = 7.2
"""The same for the bold labels (the missing ordering's box)."""

Box = Tuple[float, float, float, float]
"""(left, top, right, bottom) of something drawn, to keep labels from overlapping it."""
Positions = Dict[int, Tuple[float, float]]
"""``id(mark)`` -> the mark's (x, y)."""
Missing = Tuple[float, float, float, float, float, float, List[str]]
"""The missing ordering's dashed line and label: ``(x1, y1, x2, y2, label_x, label_y, label
lines)``."""


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _n(value: float) -> str:
    return f"{value:.1f}"


def _text(x: float, y: float, text: str, cls: str, anchor: str = "middle") -> str:
    return f'<text x="{_n(x)}" y="{_n(y)}" class="{cls}" text-anchor="{anchor}">{_e(text)}</text>'


def _labels(race: Race, mark: Mark) -> Tuple[str, str]:
    """The texts above and below a racing mark (already cleaned, not escaped)."""
    access = race.accesses[mark.racing - 1]
    file, line = split_location(access.location)
    short = file.replace("\\", "/").rsplit("/", 1)[-1]
    where = f"{short}:{line}" if line is not None else short
    below = f"#{mark.racing} {_explain.verb(access)} · {clean(where, 30)}"
    return clean(value_seen(access), 34), below


def _columns(race: Race, timeline: Timeline, step: float) -> List[float]:
    xs: List[float] = []
    x: float = LABEL_W + 16
    for mark in timeline.marks:
        width = step
        if mark.racing:
            above, below = _labels(race, mark)
            width = max(step, CHAR_W * max(len(above), len(below)) + 14)
        xs.append(x + width / 2)
        x += width
    return xs


def _rows(timeline: Timeline) -> Dict[int, int]:
    order = [i for i, lane in enumerate(timeline.lanes) if lane.context]
    order += [i for i, lane in enumerate(timeline.lanes) if not lane.context]
    return {lane: row for row, lane in enumerate(order)}


def _mark(mark: Mark, x: float, y: float) -> str:
    kind = mark.event.kind
    title = f"<title>{_e(describe(mark.event))}</title>"
    if kind == "StateChange":
        shape = f'<circle cx="{_n(x)}" cy="{_n(y)}" r="5.5" class="m-state"/>'
    elif kind in ("LockAcquire", "LockRelease"):
        cls = "m-acq" if kind == "LockAcquire" else "m-rel"
        shape = f'<rect x="{_n(x - 5)}" y="{_n(y - 5)}" width="10" height="10" class="{cls}"/>'
    elif kind in ("AsyncSpawn", "AsyncAwait"):
        shape = (
            f'<path d="M{_n(x)} {_n(y - 7)} L{_n(x + 7)} {_n(y)} L{_n(x)} {_n(y + 7)} '
            f'L{_n(x - 7)} {_n(y)} Z" class="m-task"/>'
        )
    else:
        shape = f'<circle cx="{_n(x)}" cy="{_n(y)}" r="4" class="m-other"/>'
    return f"<g>{title}{shape}</g>"


def _label_offsets(side: str) -> Tuple[float, float]:
    """The y offsets of a racing mark's value and location labels: both ``above``, both
    ``below``, or the value above and the location below (``split``)."""
    return {"above": (-40.0, -24.0), "below": (32.0, 46.0)}.get(side, (-24.0, 34.0))


def _racing(race: Race, mark: Mark, x: float, y: float, side: str) -> str:
    above, below = _labels(race, mark)
    access = race.accesses[mark.racing - 1]
    title = f"<title>{_e(describe(mark.event))}</title>"
    dy_value, dy_where = _label_offsets(side)
    return (
        f'<g class="racing">{title}'
        f'<circle cx="{_n(x)}" cy="{_n(y)}" r="19" class="halo"/>'
        f'<circle cx="{_n(x)}" cy="{_n(y)}" r="12.5" class="m-race"/>'
        + _text(x, y + 4.5, access_letter(access), "race-letter")
        + _text(x, y + dy_value, above, "race-value")
        + _text(x, y + dy_where, below, "race-where")
        + "</g>"
    )


def _racing_boxes(race: Race, mark: Mark, x: float, y: float, side: str) -> List[Box]:
    boxes = [(x - 20, y - 20, x + 20, y + 20)]
    for text, dy in zip(_labels(race, mark), _label_offsets(side), strict=True):
        half = CHAR_W * len(text) / 2
        boxes.append((x - half, y + dy - 11, x + half, y + dy + 3))
    return boxes


def _shorten(x1: float, y1: float, x2: float, y2: float, r1: float, r2: float) -> Tuple[float, float, float, float]:
    length = math.hypot(x2 - x1, y2 - y1) or 1.0
    ux, uy = (x2 - x1) / length, (y2 - y1) / length
    return x1 + ux * r1, y1 + uy * r1, x2 - ux * r2, y2 - uy * r2


def _radius(mark: Mark) -> float:
    return 15.0 if mark.racing else 8.0


def _label_box(x: float, y: float, lines: List[str], cls: str) -> str:
    """A boxed label of one or more lines; (x, y) is the baseline of its first line."""
    width = BOLD_W * max(map(len, lines)) + 14
    out = [
        f'<rect x="{_n(x)}" y="{_n(y - 12)}" width="{_n(width)}" '
        f'height="{_n(15 * len(lines) + 4)}" rx="3" class="{cls}-box"/>'
    ]
    out.extend(_text(x + 7, y + 15 * i, line, cls, "start") for i, line in enumerate(lines))
    return "".join(out)


def _time_axis(timeline: Timeline, xs: List[float], y: float, right: float, marker: str) -> List[str]:
    out = [
        f'<line x1="{LABEL_W}" y1="{_n(y)}" x2="{_n(right)}" y2="{_n(y)}" class="axis" marker-end="url(#{marker})"/>'
    ]
    if not timeline.marks:
        return out
    t0 = timeline.marks[0].event.nanos
    try:
        start = datetime.fromtimestamp(t0 / 1e9, timezone.utc).strftime("%H:%M:%S.%f UTC")
    except (OverflowError, OSError, ValueError):
        start = str(t0)
    out.append(_text(LABEL_W - 12, y + 4, f"t0 {start}", "axis-label", "end"))
    for mark, x in zip(timeline.marks, xs, strict=True):
        if mark.racing:
            ms = (mark.event.nanos - t0) / 1e6
            out.append(f'<line x1="{_n(x)}" y1="{_n(y - 4)}" x2="{_n(x)}" y2="{_n(y + 4)}" class="axis"/>')
            out.append(_text(x, y + 17, f"+{ms:.3f} ms", "axis-label"))
    out.append(_text(LABEL_W - 12, y + 18, "time → (in order, not to scale)", "axis-label", "end"))
    return out


def _sides(timeline: Timeline, pos: Positions) -> Dict[int, str]:
    """Where the labels of the two marks joined by the missing line go: away from the line
    (the upper mark's above it, the lower mark's below it)."""
    racing = [m for m in timeline.racing if id(m) in pos]
    if len(racing) < 2:
        return {}
    a, b = racing[-2], racing[-1]
    ya, yb = pos[id(a)][1], pos[id(b)][1]
    if ya == yb:
        return {}
    upper, lower = (a, b) if ya < yb else (b, a)
    return {id(upper): "above", id(lower): "below"}


def _overlap(a: Box, b: Box) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _hits_segment(box: Box, x1: float, y1: float, x2: float, y2: float) -> bool:
    steps = 24
    return any(
        box[0] <= x1 + (x2 - x1) * i / steps <= box[2] and box[1] <= y1 + (y2 - y1) * i / steps <= box[3]
        for i in range(steps + 1)
    )


def _missing(race: Race, timeline: Timeline, pos: Positions) -> Optional[Missing]:
    """The dashed line between the last two racing marks and its label (`Missing`), or None.
    The label goes beside the line, where it covers no happens-before edge if it can."""
    racing = [m for m in timeline.racing if id(m) in pos]
    if len(racing) < 2:
        return None
    (x1, y1), (x2, y2) = pos[id(racing[-2])], pos[id(racing[-1])]
    label = ["missing:", *_explain.short(race).split(", ")]
    if race.kind == LOST_UPDATE and len(race.accesses) >= 3:
        letters = strand_letters(race)
        a = letters.get(strand_of(race.accesses[0]), "?")
        b = letters.get(strand_of(race.accesses[1]), "?")
        label = [f"lost: {b}'s write,", f"overwritten by {a}'s", "stale write"]
    width = BOLD_W * max(map(len, label)) + 14
    height = 15 * len(label) + 4
    my = (y1 + y2) / 2 - height / 2 + 12
    mid = (x1 + x2) / 2
    candidates = [(max(x1, x2) + 26, my), (min(x1, x2) - 26 - width, my), (mid + 14, my), (mid - 14 - width, my)]
    if y1 == y2:
        candidates = [(mid - width / 2, y1 - 46 - height)]
    edges = [
        (pos[id(e.source)], pos[id(e.target)]) for e in timeline.edges if id(e.source) in pos and id(e.target) in pos
    ]
    mx, my = candidates[0]
    for cx, cy in candidates:
        box = (cx, cy - 12, cx + width, cy - 12 + height)
        if cx > LABEL_W and not any(_hits_segment(box, *p, *q) for p, q in edges):
            mx, my = cx, cy
            break
    return (*_shorten(x1, y1, x2, y2, 13, 13), mx, my, label)


def _lanes(timeline: Timeline, rows: Dict[int, int], y_of: Dict[int, float], right: float) -> List[str]:
    out: List[str] = []
    for lane_i, lane in enumerate(timeline.lanes):
        row, y = rows[lane_i], y_of[lane_i]
        band = "band-ctx" if lane.context else ("band-a" if row % 2 else "band-b")
        out.append(f'<rect x="0" y="{_n(y - ROW_H / 2)}" width="{_n(right)}" height="{ROW_H}" class="{band}"/>')
        out.append(
            f'<line x1="{LABEL_W}" y1="{_n(y)}" x2="{_n(right - 20)}" y2="{_n(y)}" '
            f'class="{"lane-ctx" if lane.context else "lane"}"/>'
        )
        if lane.context:
            out.append(_text(16, y - 4, "parent strand", "lane-ctx-name", "start"))
        else:
            out.append(f'<circle cx="30" cy="{_n(y - 6)}" r="14" class="badge"/>')
            out.append(_text(30, y - 1, lane.letter, "badge-letter"))
            out.append(_text(52, y - 8, f"strand {lane.letter}", "lane-name", "start"))
        out.append(_text(16 if lane.context else 52, y + 12, clean(lane.thread_id, 26), "lane-id", "start"))
        if lane.service:
            out.append(_text(52, y + 26, clean(lane.service, 26), "lane-id", "start"))
    return out


def _read_modify_write(race: Race, timeline: Timeline, pos: Positions) -> List[str]:
    """A lost update: a band on the reading lane from its read to its stale write."""
    if race.kind != LOST_UPDATE or len(timeline.racing) < 3:
        return []
    read, stale = timeline.racing[0], timeline.racing[-1]
    if id(read) not in pos or id(stale) not in pos or read.lane != stale.lane:
        return []
    (x1, y), (x2, _) = pos[id(read)], pos[id(stale)]
    return [
        f'<rect x="{_n(x1 - 22)}" y="{_n(y - 22)}" width="{_n(x2 - x1 + 44)}" height="44" rx="22" class="rmw"/>',
        _text((x1 + x2) / 2, y - 6, "read → write not atomic", "rmw-label"),
    ]


def _edges(timeline: Timeline, pos: Positions, placed: List[Box], arrow: str) -> List[str]:
    """The happens-before arrows; each label where it overlaps nothing placed (else none: the
    arrow's tooltip still names it)."""
    out: List[str] = []
    for edge in timeline.edges:
        if id(edge.source) not in pos or id(edge.target) not in pos:
            continue
        (x1, y1), (x2, y2) = pos[id(edge.source)], pos[id(edge.target)]
        x1, y1, x2, y2 = _shorten(x1, y1, x2, y2, _radius(edge.source), _radius(edge.target))
        out.append(
            f'<line x1="{_n(x1)}" y1="{_n(y1)}" x2="{_n(x2)}" y2="{_n(y2)}" '
            f'class="hb" marker-end="url(#{arrow})"><title>{_e(edge.label)}</title></line>'
        )
        for t in (0.5, 0.3, 0.7, 0.15, 0.85):
            lx, ly = x1 + (x2 - x1) * t + 6, y1 + (y2 - y1) * t + 4
            box = (lx, ly - 10, lx + CHAR_W * len(edge.label), ly + 3)
            if not any(_overlap(box, other) for other in placed):
                placed.append(box)
                out.append(_text(lx, ly, edge.label, "hb-label", "start"))
                break
    return out


def _defs(arrow: str, axis_marker: str) -> str:
    return (
        f'<defs><marker id="{arrow}" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
        f'markerHeight="7" orient="auto-start-reverse"><path d="M0 0 L10 5 L0 10 z" '
        f'class="arrowhead"/></marker>'
        f'<marker id="{axis_marker}" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="6" '
        f'markerHeight="6" orient="auto"><path d="M0 0 L10 5 L0 10 z" class="axis-head"/>'
        f"</marker></defs>"
    )


def render(race: Race, timeline: Timeline, uid: str) -> str:
    """The SVG element for one race; `uid` (digits) makes its marker ids unique in the page."""
    step = min(56.0, max(30.0, 640.0 / max(len(timeline.marks), 1)))
    xs = _columns(race, timeline, step)
    rows = _rows(timeline)
    y_of = {lane: TOP + row * ROW_H + ROW_H / 2 for lane, row in rows.items()}
    pos: Positions = {id(m): (x, y_of[m.lane]) for m, x in zip(timeline.marks, xs, strict=True)}
    racing = [m for m in timeline.racing if id(m) in pos]
    missing = _missing(race, timeline, pos)
    sides = _sides(timeline, pos)
    right = max((xs[-1] if xs else LABEL_W) + 60, LABEL_W + 480)
    placed: List[Box] = []
    for mark in racing:
        boxes = _racing_boxes(race, mark, *pos[id(mark)], sides.get(id(mark), ""))
        placed.extend(boxes)
        right = max(right, max(b[2] for b in boxes) + 20)
    if missing is not None:
        mx, my, label = missing[4:]
        placed.append((mx, my - 12, mx + BOLD_W * max(map(len, label)) + 14, my + 15 * len(label) - 8))
        right = max(right, placed[-1][2] + 20)
    height = TOP + len(timeline.lanes) * ROW_H + BOTTOM
    arrow, axis_marker = f"hb{uid}", f"ax{uid}"
    out = [
        f'<svg class="timeline" width="{_n(right)}" height="{_n(height)}" '
        f'style="min-width:{_n(min(right, max(640.0, right * 0.6)))}px" '
        f'viewBox="0 0 {_n(right)} {_n(height)}" role="img" '
        f'aria-label="{_e("timeline of race " + uid)}">',
        _defs(arrow, axis_marker),
    ]
    out.extend(_lanes(timeline, rows, y_of, right))
    out.extend(_read_modify_write(race, timeline, pos))
    out.extend(_edges(timeline, pos, placed, arrow))
    out.extend(_mark(m, x, y_of[m.lane]) for m, x in zip(timeline.marks, xs, strict=True) if not m.racing)
    if missing is not None:
        sx1, sy1, sx2, sy2, mx, my, label = missing
        out.append(f'<line x1="{_n(sx1)}" y1="{_n(sy1)}" x2="{_n(sx2)}" y2="{_n(sy2)}" class="missing"/>')
        out.append(_label_box(mx, my, label, "missing-label"))
    out.extend(_racing(race, m, *pos[id(m)], sides.get(id(m), "")) for m in racing)
    out.extend(_time_axis(timeline, xs, height - BOTTOM + 22, right - 20, axis_marker))
    out.append("</svg>")
    return "".join(out)


__all__ = ["render"]
