"""Chosen attributes of a class that record their own reads and writes: a descriptor
(`SharedAttribute`) and a class decorator (`track_attributes`).

Where `raceway.shared` tracks one object, these track an attribute of every instance of a
class, from its creation on::

    @raceway.track_attributes("balance", label="owner")
    class Account:
        def __init__(self, owner, balance):
            self.owner = owner
            self.balance = balance          # a Write of Account[alice].balance

    class Account:
        balance = raceway.SharedAttribute(0)    # the same, by hand, with a default

Each instance's variables are named after the instance: ``Class#n.attr`` (``n`` counts the
instances of the class as they are first accessed), or ``Class[label].attr`` with ``label``
(the name of an attribute that names the instance, read without recording it, or a function of
the instance). Values live where they would without the descriptor (the instance's
``__dict__``, or its slot), so ``vars()``, pickling, ``copy`` and dataclasses work as before.
The recording is that of `raceway.shared` (reads, writes, the old value of a write, a missing
attribute read as ``"<absent>"``; docs/auto.md).

With dataclasses, put ``@track_attributes`` above ``@dataclass`` (it replaces the class
attributes dataclass left as defaults); without names it tracks every annotated attribute.
"""

from __future__ import annotations

import itertools
import threading
import weakref
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterator, List, Optional, Union

from ._recording import ABSENT, TrackedVariables, busy, emit

if TYPE_CHECKING:
    from ._client_protocol import StateTracker

__all__ = ["SharedAttribute", "track_attributes"]

_NO_DEFAULT: Any = object()
_ident = threading.get_ident


class _Labels:
    """``Class#n`` for each instance, kept while the instance lives (a new object at a reused
    address gets a new number, so two objects never share variables)."""

    def __init__(self) -> None:
        self.by_id: Dict[int, str] = {}
        self.counters: Dict[str, Iterator[int]] = {}
        self.lock = threading.Lock()

    def of(self, obj: object) -> str:
        key = id(obj)
        found = self.by_id.get(key)
        if found is not None:
            return found
        with self.lock:
            found = self.by_id.get(key)
            if found is None:
                cls = type(obj)
                name = getattr(cls, "_raceway_base", cls).__name__
                counter = self.counters.setdefault(name, itertools.count(1))
                found = f"{name}#{next(counter)}"
                try:
                    weakref.finalize(obj, self.by_id.pop, key, None)
                except TypeError:  # not weak-referenceable: named by address instead
                    found = f"{name}@{key:x}"
                else:
                    self.by_id[key] = found
        return found


_labels = _Labels()


class SharedAttribute:
    """A data descriptor whose reads and writes, on each instance, are recorded as
    ``StateChange`` events of ``<instance>.<name>`` (see the module's documentation).

    ``default``: the value an instance that never set the attribute reads (none: such a read
    raises ``AttributeError``, as a plain attribute would). ``label``: names the instance (the
    name of one of its attributes, or a function of it). ``client``: where to record (default:
    the client automatic tracking records to).

    Values are whatever the instances hold (``Any``, as for a ``property``)."""

    def __init__(
        self,
        default: Any = _NO_DEFAULT,
        *,
        label: Union[str, Callable[[Any], object], None] = None,
        client: Optional[StateTracker] = None,
    ):
        self.default = default
        self.label = label
        self.name = "<unnamed>"
        self.slot: Any = None  # the slot's member descriptor, when the attribute is a slot
        self.rec = TrackedVariables("", client, attrs=True)

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    # -- naming ----------------------------------------------------------------------------
    def _var(self, obj: object) -> str:
        label = self.label
        if label is None:
            base = _labels.of(obj)
        else:
            base = f"{getattr(type(obj), '_raceway_base', type(obj)).__name__}[{self._label_text(obj)}]"
        return f"{base}.{self.name}"

    def _label_text(self, obj: object) -> str:
        label = self.label
        ident = _ident()
        nested = ident in busy
        busy.add(ident)  # the label's own reads are not the application's
        try:
            if isinstance(label, str):
                try:
                    value = object.__getattribute__(obj, "__dict__").get(label, "?")
                except AttributeError:
                    value = getattr(obj, label, "?")
            else:
                value = label(obj)  # type: ignore[misc]  # not None: `_var` calls this with a label
            return str(value)[:100]
        except Exception:
            return "?"
        finally:
            if not nested:
                busy.discard(ident)

    # -- storage ---------------------------------------------------------------------------
    def _load(self, obj: Any) -> Any:
        if self.slot is not None:
            return self.slot.__get__(obj, type(obj))
        try:
            return obj.__dict__[self.name]
        except KeyError:
            raise AttributeError(f"{type(obj).__name__!r} object has no attribute {self.name!r}") from None

    # -- the descriptor --------------------------------------------------------------------
    def __get__(self, obj: Any, owner: Optional[type] = None) -> Any:
        if obj is None:
            return self
        try:
            value = self._load(obj)
        except AttributeError:
            if self.default is _NO_DEFAULT:
                self._emit(obj, None, ABSENT, "Read")
                raise
            value = self.default
        self._emit(obj, None, value, "Read")
        return value

    def __set__(self, obj: Any, value: Any) -> None:
        if self.slot is not None:
            self.slot.__set__(obj, value)
        else:
            obj.__dict__[self.name] = value
        self._emit(obj, None, value, "Write")

    def __delete__(self, obj: Any) -> None:
        if self.slot is not None:
            self.slot.__delete__(obj)
        else:
            try:
                del obj.__dict__[self.name]
            except KeyError:
                raise AttributeError(self.name) from None
        self._emit(obj, None, ABSENT, "Write")

    def _emit(self, obj: Any, old: Any, new: Any, access: str) -> None:
        if busy and _ident() in busy:
            return
        rec = self.rec
        if rec.client is None:
            from . import _auto

            if _auto.client is None:
                return
        emit(rec, self._var(obj), old, new, access)

    def __repr__(self) -> str:
        return f"<SharedAttribute {self.name}>"


def track_attributes(
    *names: str, label: Union[str, Callable[[Any], object], None] = None, client: Optional[StateTracker] = None
) -> Callable[[type], type]:
    """A class decorator: the attributes ``names`` (default: every annotated attribute) of
    every instance record their reads and writes, as with `SharedAttribute`. A class-level
    value of one of them becomes its default; a slot keeps its storage."""

    def decorate(cls: type) -> type:
        chosen = names or tuple(_annotated(cls))
        if not chosen:
            raise TypeError(f"track_attributes: name the attributes of {cls.__name__} to track")
        for name in chosen:
            existing = cls.__dict__.get(name, _NO_DEFAULT)
            attr = SharedAttribute(label=label, client=client)
            if type(existing).__name__ == "member_descriptor":  # a slot
                attr.slot = existing
            elif isinstance(existing, SharedAttribute):
                continue
            elif existing is not _NO_DEFAULT:
                if hasattr(type(existing), "__get__"):
                    raise TypeError(f"track_attributes: {cls.__name__}.{name} is a method or descriptor, not data")
                attr.default = existing
            attr.__set_name__(cls, name)
            setattr(cls, name, attr)
        return cls

    return decorate


def _annotated(cls: type) -> List[str]:
    out: List[str] = []
    for name, annotation in cls.__dict__.get("__annotations__", {}).items():
        text = annotation if isinstance(annotation, str) else repr(annotation)
        if "ClassVar" not in text:
            out.append(name)
    return out
