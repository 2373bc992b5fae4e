"""`raceway.shared` for objects other than containers: attributes that record themselves.

The object is tracked in place. Its class is swapped for a subclass made for it alone, which
overrides ``__getattribute__``, ``__setattr__`` and ``__delattr__``: reading an attribute the
object holds (in its ``__dict__`` or a slot, or a plain value its class provides as a default)
records a read of ``name.attr``, setting or deleting one a write. Methods, properties and other
descriptors are not variables (a property's own reads and writes of the object are recorded as
they happen); neither are dunder names.

What stays as it was: ``isinstance``, ``obj.__class__`` (the original class, so ``__eq__``
implementations comparing classes, dataclasses' included, still work), ``repr``, pickling and
``copy`` (an instance of the original class comes back), ``vars(obj)``. ``type(obj)`` is the
one visible change.
"""

from __future__ import annotations

import abc
from typing import TYPE_CHECKING, Any, Callable, Dict, FrozenSet, Optional, SupportsIndex, TypeVar

from ._recording import ABSENT, TrackedVariables, emit

if TYPE_CHECKING:
    from ._client_protocol import StateTracker

_DESCRIPTOR = object()
_T = TypeVar("_T")


def _slots(cls: type) -> FrozenSet[str]:
    names: set[str] = set()
    for klass in cls.__mro__:
        slots = klass.__dict__.get("__slots__", ())
        if isinstance(slots, str):
            slots = (slots,)
        names.update(s for s in slots if s not in ("__dict__", "__weakref__"))
    return frozenset(names)


def _check(cls: type) -> None:
    if type(cls) not in (type, abc.ABCMeta):
        raise TypeError(
            f"raceway.shared() cannot track a {cls.__name__} in place: its class has a custom "
            f"metaclass ({type(cls).__name__}); use raceway.attributes or track_state_change"
        )
    for klass in cls.__mro__[:-1]:
        if "__init_subclass__" in klass.__dict__:
            raise TypeError(
                f"raceway.shared() cannot track a {cls.__name__} in place: {klass.__name__} defines "
                "__init_subclass__; use raceway.attributes or track_state_change"
            )
    if not cls.__flags__ & (1 << 9):  # Py_TPFLAGS_HEAPTYPE: a class written in Python
        raise TypeError(
            f"raceway.shared() cannot track a {cls.__name__} in place (a C type): wrap the "
            "dicts, lists and sets it holds, or use track_state_change"
        )


def share_object(obj: _T, name: str, client: Optional[StateTracker]) -> _T:
    """``obj`` tracked in place (its class swapped for a subclass that records); ``TypeError``
    when it cannot be (see `raceway.shared`)."""
    if isinstance(obj, (str, bytes, int, float, complex, tuple, frozenset, type(None), bool)):
        raise TypeError(f"raceway.shared(): a {type(obj).__name__} is immutable: there is nothing to track")
    if isinstance(obj, type):
        raise TypeError("raceway.shared() tracks instances, not classes")
    original = type(obj)
    _check(original)
    rec = TrackedVariables(name, client, attrs=True)
    namespace: Dict[str, Any] = _methods(original, rec)
    namespace.update(
        {
            "__slots__": (),
            "__module__": original.__module__,
            "__qualname__": original.__qualname__,
            "_raceway_shared": True,
            "_raceway_rec": rec,
            "_raceway_base": original,
        }
    )
    cls = type(original.__name__, (original,), namespace)
    try:
        obj.__class__ = cls
    except TypeError as e:
        raise TypeError(f"raceway.shared() cannot track a {original.__name__} in place: {e}") from None
    return obj


def _methods(original: type[object], rec: TrackedVariables) -> Dict[str, Callable[..., Any]]:
    """The tracked class's own methods (each a closure over ``original`` and ``rec``)."""
    base_get = original.__getattribute__
    base_set = original.__setattr__
    base_del = original.__delattr__
    slots = _slots(original)
    names = rec.names
    kinds: Dict[str, object] = {}  # attribute name -> _DESCRIPTOR (not a variable) or None (a class default)

    def kind(attr: str) -> object:
        """What the class says ``attr`` is, when the instance does not hold it."""
        found = kinds.get(attr, False)
        if found is False:
            found = None
            for klass in original.__mro__:
                if attr in klass.__dict__:
                    value = klass.__dict__[attr]
                    if hasattr(type(value), "__get__") or hasattr(type(value), "__set__"):
                        found = _DESCRIPTOR
                    break
            if attr in slots:
                found = None
            kinds[attr] = found
        return found

    def holds(self: object, attr: str) -> bool:
        if attr in slots:
            return True
        try:
            return attr in object.__getattribute__(self, "__dict__")
        except AttributeError:
            return False

    def __getattribute__(self: object, attr: str) -> Any:
        if attr[:2] == "__":
            if attr == "__class__":
                return original
            return base_get(self, attr)
        if attr[:9] == "_raceway_":
            return base_get(self, attr)
        try:
            value = base_get(self, attr)
        except AttributeError:
            rec.read(attr, ABSENT)
            raise
        if holds(self, attr) or kind(attr) is None:
            emit(rec, names.get(attr) or rec.var(attr), None, value, "Read")
        return value

    def __setattr__(self: object, attr: str, value: object) -> None:
        base_set(self, attr, value)
        if attr[:2] != "__" and (holds(self, attr) or kind(attr) is None):
            emit(rec, names.get(attr) or rec.var(attr), None, value, "Write")

    def __delattr__(self: object, attr: str) -> None:
        base_del(self, attr)
        if attr[:2] != "__" and kind(attr) is None:
            rec.write(attr, ABSENT)

    def __reduce_ex__(self: object, protocol: SupportsIndex) -> str | tuple[Any, ...]:
        """Pickling and ``copy`` give an instance of the original class."""
        _read_all(self)
        reduced = original.__reduce_ex__(self, protocol)
        if isinstance(reduced, tuple) and len(reduced) >= 2 and isinstance(reduced[1], tuple):
            args = tuple(original if a is type(self) else a for a in reduced[1])
            reduced = (reduced[0], args) + reduced[2:]
        return reduced

    def _read_all(self: object) -> None:
        try:
            attrs = list(object.__getattribute__(self, "__dict__").items())[:100]
        except AttributeError:
            attrs = []
        for attr, value in attrs:
            if attr[:2] != "__":
                rec.read(attr, value)

    return {
        "__getattribute__": __getattribute__,
        "__setattr__": __setattr__,
        "__delattr__": __delattr__,
        "__reduce_ex__": __reduce_ex__,
    }
