"""Offline analysis of records files: what ``python -m raceway analyze`` does, minus the printing.

Races such as lost updates depend on the order of events across processes, so the events of
all the files (several services, several processes, rotated backups) are merged into one order
before the detector sees them:

1. `read_records` decomposes every batch line into events, each with its context and state
   rows (interned in shared tables) and its process, and counts per file and reason what it
   could not use: broken lines, foreign JSON lines, a truncated last line, malformed events.
2. `merge_order` sorts them by ``unix_nanos`` (stable: ties keep file and line order), but
   never reorders one strand's events: a strand's events keep their ``seq`` order even when
   its clock went backwards (each event's time is raised to its predecessor's for the sort).
   An event seen twice (the same strand and ``seq``, e.g. a file listed twice) is kept once.
3. `rebatch` cuts the merged order into new record batches (~500 events, a new batch whenever
   the process changes, with their own context and state tables) and `detect` feeds them to
   a `raceway._detector.Detector` one by one.

Memory: reading streams line by line, but every event of every file is held until the merge
is done, since the order is global: as a tuple with its record's fields kept as compact JSON
text (a quarter of the parsed lists' size), ~400 bytes per event measured, about three times
the files' size. The batches handed to the detector are made one at a time, unless the HTML
report needs them all.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import zlib
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

if TYPE_CHECKING:
    from ._core_types import DetectorOptionsJSON, DetectorStatsJSON
    from .races import Race
    from .report.suppressions import Suppressions

RECORDS_FORMAT = "records/1"
BATCH_EVENTS = 500
"""Events per batch handed to the detector, at most."""

REASONS = {
    "broken_line": "broken lines (not JSON)",
    "truncated_line": "truncated last line",
    "foreign_line": 'foreign lines (JSON without "raceway": "records/1")',
    "unsupported_version": "lines of another records format version",
    "malformed_batch": "malformed batch lines",
    "malformed_event": "malformed events",
    "duplicate_event": "duplicate events (the same strand and seq seen before)",
    "truncated_gzip": "truncated gzip data (the rest of the file)",
    "corrupt_gzip": "corrupt gzip data (the rest of the file)",
    "duplicate_file": "files listed more than once (read once)",
}
"""What `Recording.skipped` counts, by reason id: lines, events or files as the label says."""


class InputError(Exception):
    """A file cannot be read at all (missing, a directory, no permission, an I/O error)."""


@dataclass
class FileSummary:
    """What one input file held."""

    path: str
    lines: int = 0
    batches: int = 0
    """Record lines used."""
    events: int = 0
    """Events taken from them (before duplicates were removed)."""
    skipped: Counter[str] = field(default_factory=Counter)
    """Reason id (`REASONS`) -> count."""


Event = Tuple[int, int, int, int, int, int, int, int, str]
"""One event of a `Recording`: ``(unix_nanos, order, strand, seq, process, file, context,
state, rest)`` (see `Recording`)."""


@dataclass
class Recording:
    """The events of several records files, with shared context, state and process tables.

    An event is a tuple ``(unix_nanos, order, strand, seq, process, file, context, state,
    rest)``: ``process``, ``context`` and ``state`` index `processes`, `contexts` and `states`,
    ``file`` indexes `files`, and ``rest`` is the compact JSON array of the record's fields
    from ``seq`` on (``[seq, prev_seq, unix_nanos, duration_ns, file, line, kind, fields]``).
    """

    files: List[FileSummary] = field(default_factory=list)
    processes: List[Dict[str, Any]] = field(default_factory=list)
    contexts: List[Dict[str, Any]] = field(default_factory=list)
    states: List[Dict[str, Any]] = field(default_factory=list)
    events: List[Event] = field(default_factory=list)

    @property
    def skipped(self) -> Dict[str, Dict[str, int]]:
        """``{path: {reason id: count}}`` for the files where something was skipped."""
        return {f.path: dict(f.skipped) for f in self.files if f.skipped}

    def stats(self) -> Dict[str, int]:
        return {
            "files": len(self.files),
            "lines": sum(f.lines for f in self.files),
            "batches_read": sum(f.batches for f in self.files),
            "events_read": sum(f.events for f in self.files),
            "processes": len(self.processes),
        }


class _Interner:
    def __init__(self, table: List[Dict[str, Any]]):
        self.table = table
        self.index: Dict[str, int] = {}

    def add(self, row: Dict[str, Any]) -> Optional[int]:
        """The row's index in the table (added if new); None if it cannot be JSON again."""
        try:
            key = json.dumps(row, sort_keys=True, separators=(",", ":"), allow_nan=False)
        except ValueError:  # NaN or infinity
            return None
        i = self.index.get(key)
        if i is None:
            i = self.index[key] = len(self.table)
            self.table.append(row)
        return i


_dumps = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode


def _is_int(v: object) -> bool:
    return v.__class__ is int


_CONTEXT_TEXT = ("trace_id", "thread_id", "component", "span_id", "id_base")


def _valid_context(c: object) -> bool:
    """A context row the core takes (it refuses a whole batch for one bad row)."""
    return (
        isinstance(c, dict)
        and all(isinstance(c.get(k), str) for k in _CONTEXT_TEXT)
        and (c.get("upstream_span_id") is None or isinstance(c.get("upstream_span_id"), str))
    )


def _valid_state(s: object) -> bool:
    if not isinstance(s, dict):
        return False
    clock, locks = s.get("clock", []), s.get("locks", [])
    return (
        isinstance(clock, list)
        and isinstance(locks, list)
        and all(isinstance(e, list) and len(e) == 2 and isinstance(e[0], str) and _is_int(e[1]) for e in clock)
        and all(isinstance(lock, str) for lock in locks)
    )


def _open(path: str) -> Tuple[io.BufferedIOBase, io.BufferedIOBase]:
    """A binary line reader of ``path``, gzip-decompressed when it starts with gzip's magic,
    and the file under it (both to close)."""
    try:
        f = open(path, "rb")
        magic = f.read(2)
        f.seek(0)
    except OSError as e:
        raise InputError(f"cannot read {path}: {e.strerror or e}") from None
    if magic == b"\x1f\x8b":
        return gzip.GzipFile(fileobj=f, mode="rb"), f
    return f, f


def read_records(paths: Sequence[str]) -> Recording:
    """Reads records files (plain or gzip), in the order given.

    :raises InputError: a file cannot be opened or read (nothing is analysed then).
    """
    rec = Recording()
    procs, ctxs, states = _Interner(rec.processes), _Interner(rec.contexts), _Interner(rec.states)
    strands: Dict[Tuple[str, str], int] = {}
    seen_files: Dict[Tuple[int, int], FileSummary] = {}
    # Check them all first: an unreadable file fails the run before any work is done.
    for path in paths:
        if os.path.isdir(path):
            raise InputError(f"cannot read {path}: it is a directory")
        reader, raw = _open(path)
        reader.close()
        raw.close()
    for path in paths:
        reader, raw = _open(path)
        try:
            summary = FileSummary(path)
            try:
                st = os.fstat(raw.fileno())
                key: Tuple[int, int] = (st.st_dev, st.st_ino)
            except OSError:
                key = (-1, len(seen_files))
            if key in seen_files:
                seen_files[key].skipped["duplicate_file"] += 1
                continue
            seen_files[key] = summary
            rec.files.append(summary)
            _read_file(rec, summary, len(rec.files) - 1, reader, procs, ctxs, states, strands)
        finally:
            reader.close()
            raw.close()
    return rec


def _read_file(
    rec: Recording,
    summary: FileSummary,
    file_i: int,
    reader: io.BufferedIOBase,
    procs: _Interner,
    ctxs: _Interner,
    states: _Interner,
    strands: Dict[Tuple[str, str], int],
) -> None:
    events = rec.events
    skipped = summary.skipped
    try:
        for raw in reader:
            summary.lines += 1
            if not raw.strip():
                continue
            try:
                obj = json.loads(raw)
            except (ValueError, UnicodeDecodeError, RecursionError):
                skipped["broken_line" if raw.endswith(b"\n") else "truncated_line"] += 1
                continue
            tag = obj.get("raceway") if isinstance(obj, dict) else None
            if tag != RECORDS_FORMAT:
                if isinstance(tag, str) and tag.startswith("records/"):
                    skipped["unsupported_version"] += 1
                else:
                    skipped["foreign_line"] += 1
                continue
            process = obj.get("process")
            b_contexts, b_states, b_events = obj.get("contexts"), obj.get("states"), obj.get("events")
            if not (
                isinstance(process, dict)
                and isinstance(b_contexts, list)
                and isinstance(b_states, list)
                and isinstance(b_events, list)
            ):
                skipped["malformed_batch"] += 1
                continue
            proc_i = procs.add(process)
            if proc_i is None:
                skipped["malformed_batch"] += 1
                continue
            summary.batches += 1
            ctx_map = [ctxs.add(c) if _valid_context(c) else None for c in b_contexts]
            state_map = [states.add(s) if _valid_state(s) else None for s in b_states]
            n_ctx, n_state = len(ctx_map), len(state_map)
            bad = 0
            for ev in b_events:
                summary.events += 1
                if not (isinstance(ev, list) and len(ev) == 10):
                    bad += 1
                    continue
                c, s, seq, ts = ev[0], ev[1], ev[2], ev[4]
                if not (
                    _is_int(c)
                    and _is_int(s)
                    and _is_int(seq)
                    and _is_int(ts)
                    and _is_int(ev[3])
                    and 0 <= c < n_ctx
                    and 0 <= s < n_state
                    and isinstance(ev[8], str)
                ):
                    bad += 1
                    continue
                gc, gs = ctx_map[c], state_map[s]
                if gc is None or gs is None:
                    bad += 1
                    continue
                ctx = rec.contexts[gc]
                skey = (str(ctx.get("component") or ""), str(ctx.get("thread_id") or ""))
                strand = strands.get(skey)
                if strand is None:
                    strand = strands[skey] = len(strands)
                try:
                    rest = _dumps(ev[2:])  # compact text: ~1/4 of the memory of the parsed list
                except ValueError:  # NaN or infinity (json.loads accepts them)
                    bad += 1
                    continue
                events.append((ts, len(events), strand, seq, proc_i, file_i, gc, gs, rest))
            if bad:
                skipped["malformed_event"] += bad
    except EOFError:  # gzip: the compressed stream ends early (a file still being written)
        skipped["truncated_gzip"] += 1
    except (gzip.BadGzipFile, zlib.error):
        skipped["corrupt_gzip"] += 1
    except OSError as e:
        raise InputError(f"cannot read {summary.path}: {e.strerror or e}") from None


def merge_order(rec: Recording) -> None:
    """Sorts `Recording.events` into one order (see the module docstring), in place, and drops
    duplicates (counted as ``duplicate_event`` against the file of the later copy)."""
    events = rec.events
    # Each strand in seq order (ties: input order); times raised to be non-decreasing in it.
    events.sort(key=_strand_order)
    kept: List[Event] = []
    last_strand, last_seq, floor = -1, None, 0
    for e in events:
        if e[2] != last_strand:
            last_strand, last_seq, floor = e[2], None, e[0]
        elif e[3] == last_seq:
            rec.files[e[5]].skipped["duplicate_event"] += 1
            continue
        if e[0] < floor:
            e = (floor,) + e[1:]
        floor = e[0]
        last_seq = e[3]
        kept.append(e)
    events.clear()
    kept.sort(key=_merged_order)
    rec.events = kept


def _strand_order(e: Event) -> Tuple[int, int, int]:
    return (e[2], e[3], e[1])


def _merged_order(e: Event) -> Tuple[int, int]:
    return (e[0], e[1])


class Batch:
    """One batch for the detector: its process and its records (contexts, states, events), as
    in a records-file line without the ``raceway``/``process`` members."""

    __slots__ = ("process", "contexts", "states", "_events")

    def __init__(
        self, process: Dict[str, Any], contexts: List[Dict[str, Any]], states: List[Dict[str, Any]], events: List[str]
    ):
        self.process = process
        self.contexts = contexts
        self.states = states
        self._events = events  # each an event record's compact JSON

    def __len__(self) -> int:
        return len(self._events)

    def to_json(self) -> str:
        """The records object, as `Detector.observe` takes it."""
        return (
            f'{{"contexts":{_dumps(self.contexts)},"states":{_dumps(self.states)},"events":[{",".join(self._events)}]}}'
        )

    def as_line(self) -> Dict[str, Any]:
        """The records-file line's object (``raceway``, ``process``, then the tables)."""
        return {"raceway": RECORDS_FORMAT, "process": self.process, **json.loads(self.to_json())}


def rebatch(rec: Recording, per_batch: int = BATCH_EVENTS) -> Iterator[Batch]:
    """The merged events (call `merge_order` first) as batches of at most ``per_batch``
    events, each of one process, with their own context and state tables."""
    current_proc = -1
    ctx_ix: Dict[int, int] = {}
    state_ix: Dict[int, int] = {}
    out: List[str] = []
    contexts, states, processes = rec.contexts, rec.states, rec.processes

    for e in rec.events:
        proc = e[4]
        if out and (proc != current_proc or len(out) >= per_batch):
            yield Batch(processes[current_proc], [contexts[g] for g in ctx_ix], [states[g] for g in state_ix], out)
            ctx_ix, state_ix, out = {}, {}, []
        current_proc = proc
        lc = ctx_ix.setdefault(e[6], len(ctx_ix))
        ls = state_ix.setdefault(e[7], len(state_ix))
        out.append(f"[{lc},{ls},{e[8][1:]}")
    if out:
        yield Batch(processes[current_proc], [contexts[g] for g in ctx_ix], [states[g] for g in state_ix], out)


@dataclass
class Analysis:
    """The result of `analyze`."""

    recording: Recording
    races: List[Race]
    """Suppressions applied."""
    detector_stats: DetectorStatsJSON
    batches: Optional[List[Dict[str, Any]]] = None
    """The merged batches as records-file line objects, when asked for (`analyze`'s
    ``keep_batches``)."""
    suppressed: int = 0
    suppressions: Optional[Suppressions] = None
    """The suppressions applied, if any (for their unmatched rules)."""
    dropped: int = 0
    """Events the detector dropped (records it could not read); see `Detection`."""
    drop_reasons: Counter[str] = field(default_factory=Counter)

    def stats(self) -> Dict[str, Any]:
        return {
            **self.recording.stats(),
            "events_analysed": len(self.recording.events) - self.dropped,
            "events_dropped_by_detector": self.dropped,
            **{f"detector_{k}": v for k, v in self.detector_stats.items()},
            "suppressed": self.suppressed,
        }


@dataclass
class Detection:
    """What `detect` found, and what the detector itself refused."""

    races: List[Race]
    stats: DetectorStatsJSON
    dropped: int = 0
    """Events the detector dropped or refused (a record it could not read)."""
    reasons: Counter[str] = field(default_factory=Counter)
    """The detector's messages for them -> count (at most `MAX_REASONS` distinct)."""


MAX_REASONS = 20


def detect(
    batches: Iterable[Batch], options: Optional[DetectorOptionsJSON] = None, keep: Optional[List[Dict[str, Any]]] = None
) -> Detection:
    """Feeds the batches to one `raceway._detector.Detector`. With ``keep``, each batch's line
    object is appended to it. A batch the detector refuses is counted, not fatal.

    :raises raceway._core.CoreTrap: the detector failed (it cannot be used any more).
    """
    from ._core import CoreError, CoreTrap
    from ._detector import Detector
    from .races import races_from_json

    detector = Detector(options)
    dropped_events = 0
    reasons: Counter[str] = Counter()

    def note(message: str, n: int) -> None:
        nonlocal dropped_events
        dropped_events += n
        if message in reasons or len(reasons) < MAX_REASONS:
            reasons[message] += n

    for batch in batches:
        if keep is not None:
            keep.append(batch.as_line())
        try:
            summary = detector.observe(batch.to_json(), batch.process)
        except CoreTrap:
            raise
        except CoreError as e:  # the whole batch refused (the rows are checked first: rare)
            note(str(e), len(batch))
            continue
        dropped = summary["dropped"]
        if dropped:
            errors = summary["errors"] or ["(no reason given)"]
            for message in errors[:-1]:
                note(message, 1)
            note(errors[-1], dropped - len(errors) + 1)
    findings = detector.findings()
    return Detection(races_from_json(findings["races"]), findings["stats"], dropped_events, reasons)


def load_suppressions(path: str) -> Suppressions:
    """The suppressions rules of a file.

    :raises InputError: it cannot be read or a line is malformed."""
    from .report.suppressions import Suppressions

    try:
        return Suppressions.load(path)
    except OSError as e:
        raise InputError(f"cannot read {path}: {e.strerror or e}") from None
    except ValueError as e:  # a malformed rule (names the file and line), or not UTF-8
        raise InputError(f"invalid suppressions file: {e}") from None


def analyze_recording(
    rec: Recording,
    suppressions: Optional[Suppressions] = None,
    keep_batches: bool = False,
    options: Optional[DetectorOptionsJSON] = None,
    per_batch: int = BATCH_EVENTS,
) -> Analysis:
    """Merges (`merge_order`) and analyses what `read_records` read.

    :param suppressions: a `raceway.report.Suppressions` (see `load_suppressions`), or None.
    :param keep_batches: keep the merged batches (for the HTML report).
    """
    merge_order(rec)
    kept: Optional[List[Dict[str, Any]]] = [] if keep_batches else None
    found = detect(rebatch(rec, per_batch), options, kept)
    races, suppressed = found.races, 0
    if suppressions is not None:
        races, silenced = suppressions.apply(races)
        suppressed = len(silenced)
    return Analysis(rec, races, found.stats, kept, suppressed, suppressions, found.dropped, found.reasons)


def analyze(
    paths: Sequence[str],
    suppressions: Optional[str] = None,
    keep_batches: bool = False,
    options: Optional[DetectorOptionsJSON] = None,
) -> Analysis:
    """Reads, merges and analyses records files (`read_records`, then `analyze_recording`).

    :param suppressions: the path of a suppressions file, or None.
    :raises InputError: a file (or the suppressions file) cannot be read.
    """
    rules = load_suppressions(suppressions) if suppressions else None
    return analyze_recording(read_records(paths), rules, keep_batches, options)


def has_no_records(rec: Recording) -> bool:
    """True when the files held content but not one records line (the wrong files?)."""
    return not any(f.batches for f in rec.files) and any(
        f.skipped and set(f.skipped) != {"duplicate_file"} for f in rec.files
    )
