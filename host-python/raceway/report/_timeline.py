"""The lanes, marks and happens-before edges of one race, for the HTML drawing.

Input: the parsed lines of a records file (``{"contexts", "states", "events", ...}`` batches,
docs/record-format.md). `EventIndex` indexes the events of the strands involved in any race;
`build` keeps, for one race, the events of its strands (one lane per strand), marks its
accesses (matched by component and seq; an access with no recorded event is drawn from the
access itself), and finds the edges that exist between those lanes:

- spawn: an ``AsyncSpawn`` in the parent -> the child's first event;
- join: the child's last event -> the parent's ``AsyncAwait`` of it;
- lock: a ``LockRelease`` of lock L -> the next ``LockAcquire`` of L, when it is in another lane.

A strand that spawned or joined one of the race's strands gets a context lane too (after them,
marked `Lane.context`), with only its spawn and join events, so the spawn/join edges show.

The records are untrusted: a malformed batch, context or event is skipped, never raised.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Mapping, Optional, Set, Tuple

from ..races import Access, Race
from ._format import clean, compact, is_read, strand_letters, strand_of

_TASK_KINDS = ("AsyncSpawn", "AsyncAwait")
MAX_PARENTS = 2
"""Context lanes (parents) drawn per race at most."""
MAX_MARKS = 90
"""Events drawn per race at most; those nearest the racing accesses and the edges are kept."""


@dataclass
class Event:
    """One recorded event of a strand."""

    component: str
    seq: int
    nanos: int
    kind: str
    fields: List[Any]
    location: str
    locks: Tuple[str, ...] = ()


@dataclass
class Lane:
    component: str
    thread_id: str
    service: str
    letter: str
    context: bool = False
    """A parent strand (spawned or joined a racing strand), not one of the race's own."""


@dataclass
class Mark:
    """An event drawn on a lane; `racing` is its 1-based index among the race's accesses."""

    lane: int
    event: Event
    racing: int = 0
    column: int = 0


@dataclass
class Edge:
    kind: str
    """``spawn``, ``join`` or ``lock``."""
    source: Mark
    target: Mark
    label: str


@dataclass
class Timeline:
    lanes: List[Lane]
    marks: List[Mark]
    """In time order; `Mark.column` is the index."""
    edges: List[Edge]
    racing: List[Mark]
    """In the order of the race's accesses."""
    hidden: int = 0
    """Events of these lanes not drawn (beyond `MAX_MARKS`)."""
    from_records: bool = False
    """Whether any event came from the records (else only the accesses are drawn)."""


def _uuid(id_base: str) -> str:
    h = id_base.lower()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}" if len(h) == 32 else h


@dataclass
class EventIndex:
    """The events of some components, by component and seq, and how tasks map to them."""

    events: Dict[str, Dict[int, Event]] = field(default_factory=dict)
    tasks: Dict[str, str] = field(default_factory=dict)
    """Task ids (``id_base`` as a UUID) and thread ids -> component."""

    @classmethod
    def from_batches(cls, batches: Iterable[Mapping[str, Any]], components: Optional[Set[str]] = None) -> "EventIndex":
        """Indexes all events of `components` (every component when None) and the spawn and
        join events of every other component, from record batches."""
        index = cls()
        for batch in batches:
            try:
                index._add(batch, components)
            except (TypeError, ValueError, KeyError, AttributeError, IndexError):
                continue
        return index

    def _add(self, batch: Mapping[str, Any], components: Optional[Set[str]]) -> None:
        contexts = batch.get("contexts") or []
        states = batch.get("states") or []
        for ctx in contexts:
            if isinstance(ctx, Mapping) and isinstance(ctx.get("component"), str):
                if isinstance(ctx.get("id_base"), str):
                    self.tasks[_uuid(ctx["id_base"])] = ctx["component"]
                if isinstance(ctx.get("thread_id"), str):
                    self.tasks.setdefault(ctx["thread_id"], ctx["component"])
        for record in batch.get("events") or []:
            try:
                ctx_i, state_i, seq, _prev, nanos, _dur, file, line, kind, fields = record
                ctx = contexts[ctx_i]
                component = ctx["component"]
                if components is not None and component not in components and kind not in _TASK_KINDS:
                    continue
                state = states[state_i] if 0 <= state_i < len(states) else {}
                locks = tuple(str(lock) for lock in (state.get("locks") or ()))
                event = Event(
                    str(component),
                    int(seq),
                    int(nanos),
                    str(kind),
                    list(fields) if isinstance(fields, list) else [],
                    f"{file}:{line}",
                    locks,
                )
            except (TypeError, ValueError, KeyError, AttributeError, IndexError):
                continue
            self.events.setdefault(event.component, {})[event.seq] = event


def describe(event: Event) -> str:
    """A one-line, cleaned description of an event, for a tooltip."""
    f = event.fields
    detail = ""
    if event.kind == "StateChange" and len(f) >= 4:
        detail = f"{clean(f[3], 20)} {clean(f[0], 80)}: {compact(f[1], 40)} -> {compact(f[2], 40)}"
    elif event.kind in ("LockAcquire", "LockRelease", "FunctionCall", "Custom") and f:
        detail = clean(f[0], 80)
    elif event.kind in ("AsyncSpawn", "AsyncAwait") and f:
        detail = f"task {clean(f[0], 40)}"
    text = f"#{event.seq} {clean(event.kind, 30)} {detail}".rstrip()
    return f"{text} at {clean(event.location)}"


def _access_event(access: Access, race: Race) -> Event:
    fields = [race.variable, access.old_value, access.new_value, access.access_type]
    return Event(
        strand_of(access), access.seq, access.unix_nanos, "StateChange", fields, access.location, tuple(access.locks)
    )


def _is_access(event: Event, race: Race) -> bool:
    return event.kind == "StateChange" and bool(event.fields) and event.fields[0] == race.variable


def _edges(lanes: List[Lane], marks: Dict[Tuple[int, int], Mark], index: EventIndex) -> List[Edge]:
    by_lane: Dict[int, List[Mark]] = {}
    for mark in sorted(marks.values(), key=lambda m: m.event.seq):
        by_lane.setdefault(mark.lane, []).append(mark)
    lane_of = {lane.component: i for i, lane in enumerate(lanes)}
    edges: List[Edge] = []
    for i, lane_marks in by_lane.items():
        for mark in lane_marks:
            ev = mark.event
            if ev.kind not in ("AsyncSpawn", "AsyncAwait") or not ev.fields:
                continue
            child = _child(index, ev)
            j = lane_of.get(child) if child is not None else None
            if j is None or j == i or not by_lane.get(j):
                continue
            if ev.kind == "AsyncSpawn":
                edges.append(Edge("spawn", mark, by_lane[j][0], "spawn"))
            else:
                before = [m for m in by_lane[j] if m.event.nanos <= ev.nanos] or by_lane[j]
                edges.append(Edge("join", before[-1], mark, "join"))
    locks = sorted(
        (m for m in marks.values() if m.event.kind in ("LockAcquire", "LockRelease") and m.event.fields),
        key=lambda m: (m.event.nanos, m.lane, m.event.seq),
    )
    released: Dict[str, Mark] = {}
    for mark in locks:
        lock = str(mark.event.fields[0])
        if mark.event.kind == "LockRelease":
            released[lock] = mark
            continue
        source = released.pop(lock, None)
        if source is not None and source.lane != mark.lane:
            edges.append(Edge("lock", source, mark, f"lock {clean(lock, 40)}"))
    return edges


def _thin(marks: List[Mark], keep: Set[int]) -> Tuple[List[Mark], int]:
    """At most MAX_MARKS marks: all of `keep` (ids), then those nearest a racing mark."""
    if len(marks) <= MAX_MARKS:
        return marks, 0
    racing_at = [i for i, m in enumerate(marks) if m.racing]

    def distance(i: int) -> int:
        return min((abs(i - r) for r in racing_at), default=i)

    chosen = {i for i, m in enumerate(marks) if id(m) in keep}
    for i in sorted(range(len(marks)), key=distance):
        if len(chosen) >= MAX_MARKS:
            break
        chosen.add(i)
    return [m for i, m in enumerate(marks) if i in chosen], len(marks) - len(chosen)


def _child(index: EventIndex, event: Event) -> Optional[str]:
    """The component a spawn or join event names: by task id (``fields[0]``), or for a join
    by the child's thread id (``fields[1]``; a spawn's ``fields[1]`` is the parent's)."""
    if event.kind not in _TASK_KINDS or not event.fields:
        return None
    child = index.tasks.get(str(event.fields[0]))
    if child is None and event.kind == "AsyncAwait" and len(event.fields) > 1:
        child = index.tasks.get(str(event.fields[1]))
    return child


def _parents(index: EventIndex, children: Set[str]) -> List[Tuple[str, List[Event]]]:
    """Components (not in `children`) whose spawn/join events name one of `children`."""
    found: List[Tuple[str, List[Event]]] = []
    for component, events in index.events.items():
        if component in children:
            continue
        linked = [e for e in events.values() if _child(index, e) in children]
        if linked:
            found.append((component, linked))
            if len(found) >= MAX_PARENTS:
                break
    return found


def _thread_of(index: EventIndex, component: str) -> str:
    return next((task for task, comp in index.tasks.items() if comp == component and not _is_uuid(task)), component)


def _is_uuid(text: str) -> bool:
    return len(text) == 36 and text.count("-") == 4


def build(race: Race, index: Optional[EventIndex] = None) -> Timeline:
    """The timeline of `race` (see the module doc); `index` None or empty: accesses only."""
    letters = strand_letters(race)
    lanes: List[Lane] = []
    lane_of: Dict[str, int] = {}
    for access in race.accesses:
        key = strand_of(access)
        if key not in lane_of:
            lane_of[key] = len(lanes)
            lanes.append(Lane(key, access.thread_id, access.service, letters[key]))
    marks: Dict[Tuple[int, int], Mark] = {}
    from_records = False
    if index is not None:
        for i, lane in enumerate(list(lanes)):
            events = index.events.get(lane.component)
            if events is None:
                events = index.events.get(index.tasks.get(lane.thread_id, ""), {})
            for seq, event in events.items():
                marks[(i, seq)] = Mark(i, event)
                from_records = True
        for parent, parent_events in _parents(index, {lane.component for lane in lanes}):
            i = len(lanes)
            lanes.append(Lane(parent, _thread_of(index, parent), "", "parent", context=True))
            for event in parent_events:
                marks[(i, event.seq)] = Mark(i, event)
    racing: List[Mark] = []
    for n, access in enumerate(race.accesses, start=1):
        i = lane_of[strand_of(access)]
        place = (i, access.seq)
        mark = marks.get(place)
        if mark is None or mark.racing or not _is_access(mark.event, race):
            # Not recorded (or the records are of another run): drawn from the access itself.
            mark = Mark(i, _access_event(access, race))
            marks[place if place not in marks else (i, -n)] = mark
        mark.racing = n
        racing.append(mark)
    edges = _edges(lanes, marks, index) if index is not None else []
    ordered_marks = sorted(marks.values(), key=lambda m: (m.event.nanos, m.lane, m.event.seq))
    tasks = [e for e in edges if e.kind != "lock"]
    keep = {id(m) for m in racing} | {id(e.source) for e in tasks} | {id(e.target) for e in tasks}
    shown, hidden = _thin(ordered_marks, keep)
    visible = {id(m) for m in shown}
    edges = [e for e in edges if id(e.source) in visible and id(e.target) in visible]
    for column, mark in enumerate(shown):
        mark.column = column
    return Timeline(lanes, shown, edges, racing, hidden, from_records)


def access_letter(access: Access) -> str:
    """``R`` for a read, ``W`` for any write, for a racing mark."""
    return "R" if is_read(access) else "W"
