"""Execution contexts: who is doing the work an event records.

An execution context is one strand of work (a request, a task, a thread, a job run). It owns
a sequence counter, which is both its event counter and its own component of the vector clock,
and an immutable `State` (the clock it inherited, the locks it holds) that events share by
reference. Everything here is cheap and pure Python: the hot path touches only these objects.

The current context lives in a ``contextvars.ContextVar``, so it follows ``await`` chains and is
copied into tasks, ``asyncio.to_thread`` and ``contextvars.copy_context().run``.
"""

from __future__ import annotations

import hashlib
import inspect
import itertools
import logging
import os
import random
import re
import sys
import threading
from contextvars import ContextVar, Token
from types import FrameType
from typing import TYPE_CHECKING, Callable, Dict, Final, Iterable, List, Optional, Sequence, Set, Tuple, Union

from ._values import valid_text

if TYPE_CHECKING:
    from ._headers import OutgoingTemplate

Clock = Tuple[Tuple[str, int], ...]
ContextRow = Tuple[str, str, str, str, Optional[str], str]
"""``(trace_id, thread_id, component, span_id, upstream_span_id, id_base)``: a context as its
records carry it (docs/record-format.md), the context table's row in the JSON form."""

current_var: ContextVar[Optional["ExecutionContext"]] = ContextVar("raceway_context", default=None)
"""The running strand's (thread's or task's) execution context, or None: what `get_context`
reads. The SDK's modules read and set it directly on their hot paths."""
_current = current_var

CurrentToken = Token[Optional["ExecutionContext"]]
"""What setting the current context returns, and undoing it takes."""

# Trace, span and event ids are drawn from a Mersenne Twister seeded from the OS, as
# OpenTelemetry's id generator draws them (`random.getrandbits`), not from `os.urandom` per id:
# `os.urandom` is a system call that releases the GIL, and a request thread that releases it
# while the flusher is busy waits ~15 µs to get it back (once per new context: the middleware's
# per-request cost). Reseeded in a forked child, or both processes would draw the same ids.
_random = random.Random(os.urandom(32))
_bits = _random.getrandbits


def _reseed() -> None:
    _random.seed(os.urandom(32))


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reseed)

# Context suffixes count up from a random start: unique within the process (a random draw per
# context would collide within a few ten thousand requests), unlikely to repeat across processes.
_suffixes = itertools.count(int.from_bytes(os.urandom(4), "big"))

# `<service>#<instance>`, set by the most recent RacewayClient. Contexts made with the module-level
# `create_context` before any client exists use the fallback.
_identity = ["unknown-service#unknown-instance"]

MAX_CACHED_STATES = 4096
"""States remembered per (state, lock) by `holding` (past it the cache starts over)."""
_holding: Dict[Tuple[int, str], State] = {}
"""``(id(state), lock id) -> that state holding the lock too``: an acquire's state. By id, as
the records' tables are (a state's clock can be long to hash); the state stays alive as the
value of its `_unholding` entry, so its id is not reused while the entry exists."""
_unholding: Dict[Tuple[int, str], State] = {}
"""``(id(an acquire's state), lock id) -> the state before it``: what its release goes back to."""
holding_get = _holding.get
unholding_get = _unholding.get


def holding(state: State, lock_id: str) -> State:
    """``state`` with ``lock_id`` held too. A state is immutable, so it is made once per
    (state, lock) and reused, with the state its release goes back to: a loop that takes a lock
    a thousand times makes two states, not two thousand (each distinct state is a row of the
    core's batch, and a record made with a state older than itself is untracked by the GC in
    its first collection). For the per-event paths `holding_get` looks up without a call."""
    key = (id(state), lock_id)
    held = _holding.get(key)
    if held is None:
        if len(_holding) >= MAX_CACHED_STATES:
            _holding.clear()
            _unholding.clear()
        held = _holding[key] = (state[CLOCK], state[LOCKS] + (lock_id,))
        _unholding[(id(held), lock_id)] = state
    return held


MAX_COUNTER = 2**64 - 1
"""The largest vector-clock counter: the wire carries counters as u64 (docs/record-format.md)."""

MAX_INHERITED = 32
"""Components a context's inherited clock keeps before it retires joined strands (see
`ExecutionContext.retire`): a context that starts and joins thousands of threads keeps a clock
of this size, so spawn, join and every event cost the same after the thousandth as after the
first."""

_HEX32 = re.compile(r"[0-9a-f]{32}")
_HEX16 = re.compile(r"[0-9a-f]{16}")


def renew_after_fork() -> None:
    """In a forked child: context suffixes are drawn afresh (or the child's new contexts would
    repeat the parent's thread ids and clock components), and the context current in the
    forking thread goes on as a child of itself (as if spawned at the fork), so the child's
    events get ids and a clock component of their own."""
    global _suffixes
    _suffixes = itertools.count(int.from_bytes(os.urandom(4), "big"))
    current = _current.get()
    if current is not None:
        _current.set(current.child())


def set_identity(service_name: str, instance_id: str) -> None:
    _identity[0] = f"{service_name}#{instance_id}"


def _uuid(h: str) -> str:
    """32 lower-case hex digits as a hyphenated UUID."""
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def new_trace_id() -> str:
    """A random trace id as a lower-case hyphenated UUID (never all zero)."""
    h = f"{_bits(128):032x}"
    if h == "0" * 32:  # pragma: no cover - one in 2**128
        return new_trace_id()
    return _uuid(h)


def new_span_id() -> str:
    """A random 16-hex span id (never all zero)."""
    h = f"{_bits(64):016x}"
    return h if h != "0" * 16 else new_span_id()


def normalize_trace_id(value: str, argument: str = "trace_id") -> str:
    """Accepts a UUID or 32 hex digits, any case; returns the lower-case hyphenated UUID."""
    digits = value.replace("-", "").lower() if isinstance(value, str) else ""
    if not _HEX32.fullmatch(digits) or digits == "0" * 32:
        raise ValueError(f"{argument} must be a non-zero UUID or 32 hex digits, got {value!r}")
    return _uuid(digits)


def normalize_span_id(value: str, argument: str) -> str:
    digits = value.lower() if isinstance(value, str) else ""
    if not _HEX16.fullmatch(digits) or digits == "0" * 16:
        raise ValueError(f"{argument} must be 16 non-zero hex digits, got {value!r}")
    return digits


def merge_clocks(a: Clock, b: Iterable[Tuple[str, int]]) -> Clock:
    """Element-wise maximum, keeping first-seen order (the core's `VectorClock::merge`)."""
    merged = dict(a)
    for component, counter in b:
        if counter > merged.get(component, -1):
            merged[component] = counter
    return tuple(merged.items())


State = Tuple[Clock, Tuple[str, ...]]
"""What a context knew and held when an event happened: ``(clock, locks)``, the inherited
vector clock (without the context's own component) and the lock ids held, innermost last.
Immutable: replaced, never changed, so a recorded event keeps a reference instead of a copy.
A plain tuple of strings and ints, like `ExecutionContext.row`, so that a record holding both
is untracked by the cyclic GC after its first young collection (records wait in the log in
the tens of thousands; tracked, they would be promoted and make full collections more
frequent and longer)."""

CLOCK: Final = 0
"""A `State`'s inherited clock: ``state[CLOCK]``."""
LOCKS: Final = 1
"""A `State`'s lock ids: ``state[LOCKS]``."""


class ExecutionContext:
    """One strand of work. Create them with `create_context`, `RacewayClient.trace()` or the
    middleware; read them with `get_context()`. Its ids (``trace_id``, ``span_id``,
    ``upstream_span_id``, ``thread_id``, ``component``, ``id_base``) are fixed when it is made:
    its records carry them as `row`, made once, so assigning one later changes nothing that is
    recorded (make a new context instead)."""

    __slots__ = (
        "row",
        "trace_id",
        "span_id",
        "upstream_span_id",
        "tracestate",
        "flags",
        "thread_id",
        "component",
        "id_base",
        "seq",
        "last",
        "state",
        "outgoing",
        "owner",
        "task",
        "retirable",
        "anchor",
        "outer",
    )

    def __init__(
        self,
        trace_id: str,
        span_id: str,
        upstream_span_id: Optional[str] = None,
        tracestate: Optional[str] = None,
        flags: int = 1,
        clock: Clock = (),
        identity: Optional[str] = None,
    ):
        suffix = f"{next(_suffixes) & 0xFFFFFFFF:08x}"
        self.trace_id = trace_id
        self.span_id = span_id
        self.upstream_span_id = upstream_span_id
        self.tracestate = tracestate
        self.flags = flags
        self.thread_id = f"python-{os.getpid()}-{suffix}"
        # `<service>#<instance>` of the client the context works for (the most recent
        # client's when none is named), then this context's own suffix.
        self.component = f"{identity or _identity[0]}/{suffix}"
        self.id_base = f"{_bits(128):032x}"
        self.seq = 0  # events (and outgoing calls) so far: this context's own clock counter
        self.last = 0  # seq of the latest event: the next event's parent
        self.row: ContextRow = (self.trace_id, self.thread_id, self.component, span_id, upstream_span_id, self.id_base)
        """What a record says of its context (`ContextRow`), made once: contexts never change it."""
        self.state: State = (clock, ())
        # The outgoing-header template of this context's `state` for one client:
        # ``(client, state, template)`` (raceway/_client_propagation.py).
        self.outgoing: Optional[Tuple[object, State, OutgoingTemplate]] = None
        # The strand this context records for: a thread (its ident) and, on an event loop, the
        # asyncio task. None until the context is first used (`strand_context`) or `bind`.
        self.owner: Optional[int] = None
        self.task: object = None
        self.retirable: Optional[Dict[str, None]] = None  # components of joined strands, oldest first
        # Set by `enter` when the context is opened inside a generator (or a coroutine driven by
        # hand): the generator's frame, and the context current before. While that frame is
        # suspended the context is not the caller's (see `_resolve_anchored`).
        self.anchor: Optional[FrameType] = None
        self.outer: Optional["ExecutionContext"] = None

    def bind(self) -> "ExecutionContext":
        """Makes the calling strand this context's owner (done where a context is made for the
        strand that makes it: `trace()`, the middleware)."""
        self.owner = _ident()
        self.task = current_task()
        return self

    # -- clock -----------------------------------------------------------------------------
    def clock(self) -> Clock:
        """The current vector clock: the inherited one with this context's own counter."""
        return merge_clocks(self.state[CLOCK], ((self.component, self.seq),))

    def tick(self) -> int:
        """Counts a step that is not an event (an outgoing call) and returns the new counter."""
        self.seq += 1
        return self.seq

    def retire(self, component: str) -> None:
        """``component``'s strand has ended and this context's join of it was recorded as an
        ``AsyncAwait`` event. Past `MAX_INHERITED` components, the oldest such strands leave
        this clock. Sound for the race detector: it keeps "joined strand -> (joiner, counter
        at the join)" and treats a clock that knows the joiner there as knowing all of the
        joined strand (docs/races.md). The Raceway server has no such rule: to it, events of a
        retired strand look concurrent with what follows the join (docs/distributed.md)."""
        retirable = self.retirable
        if retirable is None:
            retirable = self.retirable = {}
        retirable[component] = None
        clock = self.state[CLOCK]
        if len(clock) <= MAX_INHERITED:
            if len(retirable) > 2 * MAX_INHERITED:  # joined strands whose components left meanwhile
                present = {c for c, _ in clock}
                for c in [c for c in retirable if c not in present]:
                    del retirable[c]
            return
        excess = len(clock) - MAX_INHERITED
        gone: Set[str] = set()
        for c in retirable:
            if len(gone) == excess:
                break
            gone.add(c)
        for c in gone:
            del retirable[c]
        self.state = (tuple(p for p in clock if p[0] not in gone), self.state[LOCKS])

    def learn(self, clock: Iterable[Tuple[str, int]]) -> None:
        """Merges what another context knew (a join, a response): later events come after it."""
        self.state = (merge_clocks(self.state[CLOCK], clock), self.state[LOCKS])

    @property
    def identity(self) -> str:
        """``<service>#<instance>``: the part of `component` before this context's suffix."""
        return self.component.rpartition("/")[0]

    @classmethod
    def new_trace(cls, identity: Optional[str] = None) -> "ExecutionContext":
        """The first context of a new trace: random trace and span ids, nothing inherited."""
        return cls(new_trace_id(), new_span_id(), identity=identity)

    def child(self) -> "ExecutionContext":
        """A new context in the same trace and service span that starts knowing all this one knew."""
        return ExecutionContext(
            self.trace_id,
            self.span_id,
            self.upstream_span_id,
            self.tracestate,
            self.flags,
            self.clock(),
            self.identity,
        )

    # -- locks -----------------------------------------------------------------------------
    def hold(self, lock_id: str) -> None:
        self.state = holding(self.state, lock_id)

    def unhold(self, lock_id: str) -> None:
        state = self.state
        before = unholding_get((id(state), lock_id))
        if before is not None:  # the release of the state's own acquire: the state before it
            self.state = before
            return
        locks = list(state[LOCKS])
        if lock_id in locks:
            # The most recent hold of a re-entrant lock goes first.
            del locks[len(locks) - 1 - locks[::-1].index(lock_id)]
        self.state = (state[CLOCK], tuple(locks))

    @property
    def task_id(self) -> str:
        """A UUID naming this context in `AsyncSpawn`/`AsyncAwait` events of its parent."""
        return _uuid(self.id_base)

    # -- names the reference SDK's context used ------------------------------------------------
    @property
    def execution_id(self) -> str:
        return self.thread_id

    @property
    def parent_span_id(self) -> Optional[str]:
        return self.upstream_span_id

    @property
    def clock_vector(self) -> List[Tuple[str, int]]:
        return list(self.clock())

    def __repr__(self) -> str:
        return f"<ExecutionContext {self.thread_id} trace={self.trace_id} span={self.span_id} seq={self.seq}>"


RacewayContext = ExecutionContext
"""The reference SDK's name for the context type (there a dataclass; build contexts with
`create_context`, whose signature is the same in both)."""


def create_context(
    trace_id: Optional[str] = None,
    *,
    span_id: Optional[str] = None,
    parent_span_id: Optional[str] = None,
    distributed: bool = False,
    clock_vector: Optional[Iterable[Sequence[object]]] = None,
    tracestate: Optional[str] = None,
) -> ExecutionContext:
    """Makes a context (the reference SDK's signature). It is not current until `set_context`.

    ``trace_id``: a UUID or 32 hex digits; ``span_id``, ``parent_span_id``: 16 hex digits (any
    case). Like the reference SDK, any other string is accepted (``create_context(
    trace_id="test-trace", span_id="test-span")``), but ids on the wire must be valid W3C ids:
    such a string is replaced by an id derived from it (SHA-256; the same string always gives
    the same id, and a ``span_id`` and a ``parent_span_id`` written alike match), with one
    WARNING per argument per process. The context's ``trace_id``/``span_id`` are then the
    derived ids. ``clock_vector``: ``(component, counter)`` pairs, components strings without
    lone surrogates, counters ints from 0 to 2**64 - 1 (the wire's u64): ``ValueError``
    otherwise, here, rather than the core refusing every batch the context's events are in.
    ``distributed`` is accepted for compatibility; whether a context is part of a distributed
    trace follows from ``parent_span_id``.
    """
    del distributed
    clock: Clock = ()
    if clock_vector:
        pairs: List[Tuple[str, int]] = []
        for pair in clock_vector:
            component, counter = pair
            if (
                not isinstance(component, str)
                or valid_text(component) is not component  # a lone surrogate: not UTF-8
                or isinstance(counter, bool)
                or not isinstance(counter, int)
                or not 0 <= counter <= MAX_COUNTER
            ):
                raise ValueError(
                    f"clock_vector entries must be (str of valid UTF-8, int from 0 to 2**64 - 1), got {pair!r}"
                )
            pairs.append((component, counter))
        clock = merge_clocks((), pairs)
    return ExecutionContext(
        valid_or_derived(trace_id, "trace_id") if trace_id is not None else new_trace_id(),
        valid_or_derived(span_id, "span_id") if span_id is not None else new_span_id(),
        valid_or_derived(parent_span_id, "parent_span_id") if parent_span_id is not None else None,
        tracestate,
        1,
        clock,
    )


_derived_warned: Set[str] = set()


def valid_or_derived(value: object, argument: str) -> str:
    """``value`` as a valid id (a ``trace_id`` as a hyphenated UUID, a span id as 16 hex
    digits) or, when it is not one, an id derived from its text: the first 32 (16) hex digits
    of SHA-256 over the kind of id and the text. One WARNING per argument per process."""
    try:
        text = value if isinstance(value, str) else str(value)  # a uuid.UUID is welcome
    except Exception:
        text = object.__repr__(value)
    trace = argument == "trace_id"
    try:
        return normalize_trace_id(text, argument) if trace else normalize_span_id(text, argument)
    except ValueError:
        pass
    width = 32 if trace else 16
    seed = f"raceway {'trace' if trace else 'span'} id\0{text}".encode("utf-8", "surrogatepass")
    digits = hashlib.sha256(seed).hexdigest()[:width]
    if digits == "0" * width:  # pragma: no cover - one in 2**64 or more
        digits = digits[:-1] + "1"
    derived = _uuid(digits) if trace else digits
    if argument not in _derived_warned:
        _derived_warned.add(argument)
        logging.getLogger("raceway").warning(
            "raceway: create_context(%s=%r): not a valid %s, so %s (derived from it: the same "
            "string always gives the same id) is used; ids on the wire must be W3C ids",
            argument,
            text[:100],
            "trace id (a UUID or 32 hex digits)" if trace else "span id (16 hex digits)",
            derived,
        )
    return derived


def update_context(event_id: str, is_first_event: bool) -> None:
    """The reference SDK's bookkeeping after each event (it kept the root and parent event ids
    and a counter on the context). A context here keeps its own sequence, from which the core
    makes the ids, so this changes nothing; the first call logs one WARNING saying so."""
    if "update_context" not in _derived_warned:
        _derived_warned.add("update_context")
        logging.getLogger("raceway").warning(
            "raceway: update_context() is ignored: each context numbers its own events, and "
            "setting parent or root ids by hand would break the order the core derives from them"
        )


def set_context(ctx: Optional[ExecutionContext]) -> CurrentToken:
    """Makes ``ctx`` current; returns the token that `reset_context` takes to undo it."""
    if ctx is not None and not isinstance(ctx, ExecutionContext):
        raise TypeError(f"set_context() takes an ExecutionContext or None, got {type(ctx).__name__}")
    return _current.set(ctx)


def reset_context(token: CurrentToken) -> None:
    """Undoes `set_context`. A token that belongs to another ``contextvars.Context`` (the
    context is left elsewhere than it was set: a generator or task finished on another strand)
    changes nothing: restoring its old value here would set a context that belongs to another
    strand. It is logged at DEBUG."""
    try:
        _current.reset(token)
    except ValueError:
        import logging

        logging.getLogger("raceway").debug("raceway: reset_context() with a token of another context; ignored")


# ----------------------------------------------------------------------------------------------
# Strands: one execution context records for one thread or task, never two
# ----------------------------------------------------------------------------------------------
_ident = threading.get_ident
_modules = sys.modules
_loop_getter: Optional[Callable[[], object]] = None  # asyncio's C `_get_running_loop`, once imported
_task_table: Union[Dict[object, object], _CurrentTasks] = {}
_claim_lock = threading.Lock()


def _bind_asyncio() -> None:
    global _loop_getter, _task_table
    from asyncio import events, tasks

    table = getattr(tasks, "_current_tasks", None)
    _task_table = table if isinstance(table, dict) else _CurrentTasks()
    _loop_getter = events._get_running_loop


class _CurrentTasks:
    """Stands in for asyncio's private table of current tasks where it is not a dict."""

    @staticmethod
    def get(loop: object) -> object:
        import asyncio

        return asyncio.current_task(loop)  # type: ignore[arg-type]


def current_task() -> object:
    """The asyncio task running in this thread, or None (no loop, or asyncio not imported:
    then no task can be running, and asyncio is not imported for the question)."""
    get = _loop_getter
    if get is None:
        if "asyncio" not in _modules:
            return None
        _bind_asyncio()
        get = _loop_getter
    loop = get()  # type: ignore[misc]
    return None if loop is None else _task_table.get(loop)


def claim(ctx: ExecutionContext) -> ExecutionContext:
    """The context the calling strand records on, given that ``ctx`` is current but not (yet)
    its own (the hot path checks ``ctx.owner``/``ctx.task`` first).

    A context nobody has used yet becomes this strand's. A context that another strand owns
    reached this one through a copied ``contextvars.Context`` (``copy_context().run`` in a
    pool thread, tasks of an event loop nobody instrumented): this strand gets a child of it,
    made current here, so that two strands never share one clock and their races stay
    visible. The child starts from what ``ctx`` knows now (docs/context.md says what this
    can and cannot order)."""
    if ctx.anchor is not None:
        return _resolve_anchored(ctx)  # type: ignore[return-value]
    ident, task = _ident(), current_task()
    with _claim_lock:
        if ctx.owner is None:
            ctx.owner, ctx.task = ident, task
            return ctx
    if ctx.owner == ident and ctx.task is task:
        return ctx
    child = ctx.child()
    child.owner, child.task = ident, task
    _current.set(child)
    return child


def strand_context() -> Optional[ExecutionContext]:
    """The current execution context of the calling strand (`claim`), or None."""
    ctx = _current.get()
    if ctx is None or (ctx.owner == _ident() and ctx.task is current_task()):
        return ctx
    return claim(ctx)


# ----------------------------------------------------------------------------------------------
# Contexts opened inside generators
# ----------------------------------------------------------------------------------------------
# A generator runs in its caller's `contextvars.Context`: a context it makes current (``with
# raceway.trace(): ... yield``) stays current in the caller after the ``yield``. Such a context
# is anchored to the generator's frame, which has no caller (``f_back is None``) while it is
# suspended or finished: then the context current before it is the one that counts.
_SUSPENDABLE = inspect.CO_GENERATOR | inspect.CO_ASYNC_GENERATOR
_COROUTINE = inspect.CO_COROUTINE | inspect.CO_ITERABLE_COROUTINE
_ANCHORED = -1
"""The owner of an anchored context: matches no thread, so the hot path's owner check sends
every event of it to `claim`, which looks at the anchor."""


def enter(ctx: ExecutionContext, frame: Optional[FrameType]) -> CurrentToken:
    """Makes ``ctx`` current for the code of ``frame`` (the frame that opened it) and binds it to
    the calling strand. A generator's frame (or a coroutine's that no task drives: one resumed by
    hand) anchors it: while that frame is suspended, the caller sees the context that was current
    before. Returns the token for `leave`."""
    outer = _current.get()
    ctx.bind()
    if frame is not None:
        flags = frame.f_code.co_flags
        if flags & _SUSPENDABLE or (flags & _COROUTINE and ctx.task is None):
            ctx.anchor, ctx.outer, ctx.owner = frame, outer, _ANCHORED
    return _current.set(ctx)


def leave(ctx: ExecutionContext, token: CurrentToken) -> bool:
    """Undoes `enter`, only where ``ctx`` is what is current: a generator closed or collected on
    another thread runs its ``finally`` in THAT thread's context, where ``ctx`` is not current,
    and must leave that thread's context exactly as it is. Returns whether it undid anything."""
    if _current.get() is not ctx:
        return False
    try:
        _current.reset(token)
    except ValueError:  # set in another `contextvars.Context` (a copy): restore what was before
        previous = token.old_value
        _current.set(None if previous is Token.MISSING else previous)
    return True


def _resolve_anchored(ctx: Optional[ExecutionContext]) -> Optional[ExecutionContext]:
    """For an anchored context: itself while its frame runs, else (suspended or finished) the
    context that was current when it was entered, resolved in turn."""
    while ctx is not None and ctx.anchor is not None:
        if ctx.anchor.f_back is not None:  # running: this strand is inside the generator
            return ctx
        ctx = ctx.outer
    if ctx is None or (ctx.owner == _ident() and ctx.task is current_task()):
        return ctx
    return claim(ctx)


def get_context() -> Optional[ExecutionContext]:
    """The current execution context, or None outside any. A context a suspended generator
    opened is not the caller's: the one current before it is returned."""
    ctx = _current.get()
    if ctx is not None and ctx.anchor is not None:
        return _resolve_anchored(ctx)
    return ctx
