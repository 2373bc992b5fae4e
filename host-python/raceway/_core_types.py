"""The shapes of the JSON that crosses the core boundary, as TypedDicts.

The component takes and returns JSON text (``wit/raceway.wit`` says why); `raceway._core`
decodes each answer into one of the dicts below, so mypy checks every reader of an answer
against what the Rust writes (``core-wasm/src/``: ``propagation.rs``, ``pipeline.rs``,
``detector/``). The WIT's comments are the contract; these types are its Python side. The
growth rule is the WIT's: fields are only ever added within a major version.

Answers (what the core writes):

- ``propagation.parse-incoming``: `IncomingJSON` (with `ParentJSON`, `UpstreamJSON`).
- ``propagation.outgoing-template``: `OutgoingTemplateJSON` (with `ClockTemplateJSON`).
- ``propagation.incoming-template``: `IncomingTemplateJSON`.
- ``pipeline.encode-batch`` and ``detector.observe`` (and their pickle-form twins,
  ``encode-batch-pickle`` and ``observe-pickle``, which answer the same): `BatchSummaryJSON`,
  the summary line; `CoreInstance.encode_batch` / `observe` return it with the bodies added,
  `EncodedBatch`.
- ``detector.races``: `FindingsJSON` (with `RaceJSON`, `AccessJSON`, `DetectorStatsJSON`).

Requests (what the host writes), for the calls that take JSON objects:

- ``pipeline.configure``: `ProcessConfigJSON`.
- ``detector.reset-detector``: `DetectorOptionsJSON`.
- ``propagation.encode-outgoing``: `OutgoingRequestJSON`; ``outgoing-template``:
  `TemplateRequestJSON`.

A JSON array decodes to a Python ``list``; where its positions have different types (a clock
entry ``[component, counter]``, a ``traceparent`` template ``[before, after]``) it is typed as
a ``Tuple`` so that each position has its type: unpacking and indexing are checked, but at run
time the value is a list (compare with ``==`` on a tuple of it, not on it).

No ``from __future__ import annotations`` here: `typing` reads ``NotRequired`` from string
annotations wrongly on 3.11, and ``__optional_keys__`` would be wrong at run time.
"""

from typing import Dict, List, Literal, NotRequired, Optional, Tuple, TypeAlias, TypedDict, Union

JSONValue: TypeAlias = Union[None, bool, int, float, str, List["JSONValue"], Dict[str, "JSONValue"]]
"""Any value JSON can hold, as `json.loads` decodes it."""

ClockEntryJSON: TypeAlias = Tuple[str, int]
"""One vector-clock entry, ``[component, counter]`` (a list at run time): the component is
``service#instance`` or ``service#instance/suffix``, the counter a u64 (events that component
has made)."""

AccessType: TypeAlias = Literal["Read", "Write", "AtomicRead", "AtomicWrite", "AtomicRMW"]
"""How an access touched its variable, in the server's spelling."""

RaceKind: TypeAlias = Literal["data-race", "lost-update"]
"""``data-race``: two unordered accesses, one a write (not both atomic). ``lost-update``: a
read, another strand's write, then a write based on the stale read (docs/races.md)."""

Severity: TypeAlias = Literal["CRITICAL", "WARNING"]
"""``CRITICAL``: write/write or a lost update. ``WARNING``: read/write."""


# -- propagation: answers ------------------------------------------------------------------------
class ParentJSON(TypedDict):
    """The caller's position in the trace, from a valid ``traceparent``."""

    trace_id: str
    """The trace, as a UUID with hyphens (``0af76519-16cd-43dd-8448-eb211c80319c``)."""
    span_id: str
    """16 lower-case hex digits: the span the caller minted for us (our span)."""
    flags: int
    """The trace flags byte (0-255); bit 0 is *sampled*, bit 1 *random*."""
    version: str
    """The ``traceparent`` version, two lower-case hex digits (``"00"``)."""


class UpstreamJSON(TypedDict):
    """What a valid ``raceway-clock`` adds to a valid ``traceparent``."""

    span_id: str
    """16 lower-case hex digits: the span the header was made for (the ``traceparent``'s)."""
    parent_span_id: Optional[str]
    """16 lower-case hex digits: the caller's own span (our upstream span); None when the
    caller had none."""
    service: str
    """The caller's service name (at most 256 bytes)."""
    instance: str
    """The caller's instance id (at most 256 bytes)."""
    clock: List[ClockEntryJSON]
    """The caller's vector clock, at most 64 entries (the sender's own first)."""


class IncomingJSON(TypedDict):
    """``parse-incoming``'s answer: what the trace headers of an incoming request say. Invalid
    headers are dropped as the W3C rules say and reported in ``errors``; without a valid
    ``traceparent`` every field but ``errors`` is None (the request starts a new trace)."""

    parent: Optional[ParentJSON]
    """From ``traceparent``; None when it is missing or invalid."""
    tracestate: Optional[str]
    """The ``tracestate`` values combined into one valid header value, or None."""
    upstream: Optional[UpstreamJSON]
    """From ``raceway-clock``; None when it is missing, invalid, or for another trace."""
    errors: List[str]
    """Why headers (or clock entries) were dropped, for the host's debug log; empty when all
    was well."""


class ClockTemplateJSON(TypedDict):
    """An outgoing ``raceway-clock``'s JSON with two holes: ``head + S + middle + N + tail``
    is the JSON for the new span id ``S`` (16 hex digits) and the sender's counter ``N`` (in
    decimal); the header value is ``v1;`` + its base64url without padding."""

    head: str
    middle: str
    tail: str


class OutgoingTemplateJSON(TypedDict):
    """``outgoing-template``'s answer: one context's outgoing headers in one state, ready to
    fill per call (`raceway._headers.OutgoingTemplate`)."""

    traceparent: Tuple[str, str]
    """``[before, after]`` (a list at run time): the header is ``before + S + after`` for the
    new span id ``S``."""
    raceway_clock: ClockTemplateJSON
    tracestate: Optional[str]
    """The ``tracestate`` header value to send as is, or None for none."""


class IncomingTemplateJSON(TypedDict):
    """``incoming-template``'s answer: the strict shapes of canonical incoming headers, each a
    regular expression to match a whole value (`raceway._headers.IncomingTemplate`; the WIT
    says what ``parse-incoming`` answers for headers that match them)."""

    traceparent: str
    """A ``traceparent`` value; groups: the trace id (32 hex digits), the span id, the flags
    (2 hex digits)."""
    tracestate: str
    """A ``tracestate`` value passed on as it is; no groups."""
    raceway_clock: str
    """A ``raceway-clock`` value; group 1: its base64url payload."""
    raceway_clock_json: str
    """The payload's bytes, one character per byte; groups: the trace id (a UUID), the span
    id, the parent span id (absent for null), the service, the instance, the clock's entries."""
    clock_entry: str
    """One clock entry in the JSON; groups: the component, the counter (decimal)."""


# -- pipeline and detector: the batch answer -----------------------------------------------------
class BatchSummaryJSON(TypedDict):
    """The summary line that ``encode-batch`` and ``observe`` answer before the bodies."""

    counts: List[int]
    """Events in each body, in order: one entry per body. Empty when ``observe`` was asked
    for no bodies (``max-events-per-body`` 0)."""
    events: int
    """Events taken from the batch (encoded, or observed by the detector)."""
    dropped: int
    """Records that could not be encoded and were dropped (never sent: the server would
    refuse the whole body for one)."""
    errors: List[str]
    """Why records were dropped: at most 10 distinct messages per batch."""


class EncodedBatch(BatchSummaryJSON):
    """`CoreInstance.encode_batch` and ``observe``'s return: the summary with the bodies that
    followed it on the wire."""

    bodies: List[bytes]
    """Request bodies for ``POST /events``, UTF-8 JSON ``{"events":[...]}``, one per entry of
    ``counts``."""


# -- detector: the findings ----------------------------------------------------------------------
class AccessJSON(TypedDict):
    """One access of a race, as the core reports it."""

    access_type: AccessType
    location: str
    """``file:line`` of the call that recorded the access."""
    stack: List[str]
    """Frames as ``file:line in function``, innermost first (the first is the location's);
    as many as ``Config.race_stack_frames`` allowed, possibly none."""
    thread_id: str
    """The execution context (strand) that made the access."""
    component: str
    """The strand's vector-clock component (``service#instance/suffix``)."""
    trace_id: str
    """The strand's trace, a UUID with hyphens."""
    service: str
    """The service that made the access."""
    seq: int
    """The strand's event counter at this access (its own clock component)."""
    timestamp: str
    """When the access happened: RFC 3339, UTC, microseconds (``...T12:00:00.000123+00:00``)."""
    unix_nanos: int
    """The same instant in nanoseconds since the Unix epoch."""
    locks: List[str]
    """Lock ids the strand held at the access."""
    old_value: JSONValue
    """The value before the access, as recorded; a value whose JSON is longer than
    ``max_value_bytes`` is a string, cut, ending ``…[+N bytes]``."""
    new_value: JSONValue
    """The value after the access, kept as ``old_value`` is."""


class RaceJSON(TypedDict):
    """One distinct race: the same variable and the same locations, however often it happened."""

    kind: RaceKind
    severity: Severity
    variable: str
    """The variable's id, as the accesses recorded it."""
    count: int
    """How many times this race was observed."""
    first_seen: str
    """RFC 3339 time (UTC, microseconds) of the first observation (its last access)."""
    last_seen: str
    """RFC 3339 time (UTC, microseconds) of the latest observation."""
    accesses: List[AccessJSON]
    """Data race: the earlier access, then the later one. Lost update: the read, the other
    strand's write in between, then the write based on the stale read."""


class DetectorStatsJSON(TypedDict):
    """The detector's counters since its last reset."""

    events: int
    """Events observed."""
    accesses: int
    """Of those, accesses to variables."""
    strands: int
    """Strands (execution contexts) whose clocks are held now."""
    variables: int
    """Variables tracked now."""
    races_dropped: int
    """Distinct races beyond ``max_races``: counted, not kept."""


class FindingsJSON(TypedDict):
    """``races``'s answer: the distinct races so far and the detector's counters."""

    races: List[RaceJSON]
    """Lost updates first, then CRITICAL, then WARNING; each group in the order found."""
    stats: DetectorStatsJSON


# -- requests --------------------------------------------------------------------------------------
class ProcessConfigJSON(TypedDict):
    """``configure``'s argument: the process fields stamped on every event."""

    service_name: str
    environment: str
    instance_id: str
    process_id: int
    """The operating system's process id (a u32)."""
    tags: NotRequired[Dict[str, str]]
    """Free-form labels; none when absent."""


class DetectorOptionsJSON(TypedDict, total=False):
    """``reset-detector``'s argument: the detector's bounds, every one optional (defaults in
    docs/races.md); an unknown key or a wrong type is refused."""

    max_races: int
    """Distinct races kept; more are counted in ``races_dropped`` (default 1,000)."""
    max_strands: int
    """Strands whose clocks are kept; past it the least recently active quarter is released
    (default 128)."""
    max_variables: int
    """Variables tracked; past it the least recently accessed eighth is forgotten
    (default 100,000)."""
    max_readers: int
    """Unordered reads kept per variable since its last write (default 64)."""
    max_value_bytes: int
    """Bytes of a value's JSON kept for a report; longer values are cut (default 256)."""


class OutgoingRequestJSON(TypedDict):
    """``encode-outgoing``'s argument: what the host knows when it makes an outgoing call."""

    trace_id: str
    """A UUID with hyphens."""
    span_id: str
    """16 lower-case hex digits: the NEW span minted for the callee."""
    parent_span_id: str
    """16 lower-case hex digits: our own span."""
    flags: NotRequired[int]
    """The trace flags byte; 1 (sampled) when absent."""
    tracestate: NotRequired[Optional[str]]
    service: str
    instance: str
    clock: List[ClockEntryJSON]
    component: NotRequired[Optional[str]]
    """The sender's own clock component: kept first when the clock is cut to the header's
    bound (3,072 bytes of JSON)."""


class TemplateRequestJSON(TypedDict):
    """``outgoing-template``'s argument: `OutgoingRequestJSON` without ``span_id``, with
    ``component`` required (the clock's entry for it is ignored: it is the template's hole)."""

    trace_id: str
    parent_span_id: str
    flags: NotRequired[int]
    tracestate: NotRequired[Optional[str]]
    service: str
    instance: str
    component: str
    clock: List[ClockEntryJSON]
