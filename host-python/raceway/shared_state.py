"""`raceway.shared(obj, name)`: shared state that records its own reads and writes.

The race detector only knows the accesses it is told about. `shared` wraps a dict, a list, a
set or an object so that each read and write of its items (or attributes) is recorded as a
``StateChange`` event, with the caller's location, and no ``track_state_change`` call anywhere::

    accounts = raceway.shared({"alice": 1000}, "accounts")
    accounts["alice"] -= 100      # a Read and a Write of accounts['alice']

**Variables.** Items are ``name[key]`` (the key's ``repr``: ``accounts['alice']``,
``results[3]``), attributes ``name.attr``, and ``name`` alone is the container's structure (its
set of keys, its length).

**What each operation records** is what it does, with Python's own atomicity:

- ``d[k]``, ``d.get(k)``, ``k in d``: a read of ``name[k]`` (a missing key reads
  ``"<absent>"``); ``d[k] = v``, ``del d[k]``, each key of ``update``: a write; so
  ``d[k] += 1`` is a read and a write, and two strands doing it unordered race.
- Inserting or removing a key also writes the structure, as an *atomic* write: two strands
  inserting different keys, or appending to one list, do not race (in Python they cannot
  corrupt anything), but iterating (a non-atomic read of the structure) while another strand
  inserts does. ``len`` and ``bool`` are atomic reads.
- ``setdefault``, ``pop``, ``popitem`` (dict), ``add``, ``discard``, ``remove``, ``pop``
  (set) are single atomic read-modify-writes, recorded as such: the idiom ``d.setdefault(k,
  [])`` from two threads is not a race, ``if k not in s: s.add(k)`` is.
- Iteration, ``==``, ``repr``, ``copy``, pickling and JSON encoding read the structure and
  the first `raceway._recording.WHOLE_ITEMS` items.
- A list's ``append``, ``extend``, ``insert``, ``pop``, ``remove``, ``clear``, ``sort``...
  write its structure (atomically); ``lst[i]`` reads and ``lst[i] = v`` writes ``name[i]``.

The ``old_value`` of a write is the value the writing strand last read of that variable (the
value the write was computed from), so a write based on a stale read is a lost update even
when every access holds the lock (docs/races.md).

**The wrapped object behaves like the original.** A dict, list or set becomes an instance of
a subclass (``isinstance(d, dict)`` holds) holding a copy of the contents: **use the returned
object in place of the original** (``self.accounts = raceway.shared(self.accounts,
"accounts")``); the original is not tracked. Equality, ordering, ``repr``, iteration order,
JSON encoding and ``copy``/``pickle`` (which give the original type back) are the
original's. An object is tracked in place: its class is swapped for a subclass
(``isinstance`` holds, ``obj.__class__`` still answers the original class, pickling and
``copy`` give an instance of the original class); ``type(obj)`` is the only visible change.

With ``deep=True``, dicts, lists and sets nested in the object when it is wrapped are wrapped
too (named ``name[key]``); containers stored later are stored as they are.

Accesses are recorded to ``client``, or to the client automatic tracking records to (set by
the pytest plugin for each test, `raceway.strands.enable_strands`,
`raceway.primitives.instrument_primitives` or `raceway.shared_state.record_to`); with none,
nothing is recorded and an access costs about one attribute read more than the original's.
Outside any execution context nothing is recorded either, unless strands without setup are on
(docs/auto.md).
"""

from __future__ import annotations

import collections
import itertools
import operator
import threading
from collections.abc import Set as AbstractSet
from types import GenericAlias
from typing import (
    TYPE_CHECKING,
    Any,
    Callable,
    ClassVar,
    Dict,
    Iterable,
    Iterator,
    Optional,
    Protocol,
    Self,
    SupportsIndex,
    TypeVar,
    overload,
)

from . import _auto
from ._recording import ABSENT, WHOLE_ITEMS, TrackedVariables, emit

if TYPE_CHECKING:
    from _typeshed import SupportsKeysAndGetItem

    from ._client_protocol import ClientLike, StateTracker

__all__ = ["shared", "is_shared", "record_to", "SharedDict", "SharedList", "SharedSet"]

_MISSING = object()

_T = TypeVar("_T")
_K = TypeVar("_K")
_V = TypeVar("_V")
_S = TypeVar("_S")
_O_co = TypeVar("_O_co", covariant=True)

if TYPE_CHECKING:
    # Each mixin is only ever put before a dict, a list or a set in an MRO (`SharedDict`,
    # `_container_class`), where its ``super()`` calls reach the container's methods: the type
    # checker sees it as a subclass of that container. At run time the mixin's own bases are
    # just `_LooksLikeTheOriginal` (an `_Erased` base adds nothing to the MRO).
    _AsDict = dict
    _AsList = list
    _AsSet = set
else:

    class _Erased:
        """``_Erased()[params]`` as a base class is no base at all: ``__mro_entries__`` (PEP 560)
        returns nothing, so the class's bases and MRO are what they would be without it."""

        __slots__ = ()

        def __getitem__(self, _params):
            return self

        def __mro_entries__(self, _bases):
            return ()

    _AsDict = _AsList = _AsSet = _Erased()


class _Silent:
    """The client of a wrapper being filled, or of one made by a library's ``type(x)(...)``:
    records nothing."""

    @staticmethod
    def track_state_change(variable: str, old_value: object, new_value: object, access_type: str = "Write") -> None:
        return None


_SILENT = _Silent()


def _off() -> TrackedVariables:
    return TrackedVariables("<untracked>", _SILENT)


def record_to(client: Optional[ClientLike]) -> Optional[ClientLike]:
    """Makes ``client`` the one shared objects without a client of their own record to (None:
    nobody). Returns the previous one. The pytest plugin does this for each test."""
    return _auto.set_client(client)


class _Wrapper(Protocol[_O_co]):
    """What `_LooksLikeTheOriginal` needs of the mixin it is part of."""

    def _raceway_read_all(self) -> None: ...

    def _raceway_original(self) -> _O_co: ...


# ----------------------------------------------------------------------------------------------
# dict
# ----------------------------------------------------------------------------------------------
class _LooksLikeTheOriginal:
    """``obj.__class__`` answers the original class for `shared`'s own wrapper classes
    (``d.__class__ is dict``); ``type(d)`` is the wrapper's. (A class of its own: a class body
    whose methods use ``super()`` cannot define ``__class__``.)"""

    __slots__ = ()
    _raceway_base: ClassVar[type]
    """The class of the object wrapped (set by each mixin and by `_container_class`)."""

    if not TYPE_CHECKING:
        # ``SharedDict[str, int]`` as for ``dict[str, int]``, and ``_DictMixin[K, V]`` as a base.
        __class_getitem__ = classmethod(GenericAlias)

    # `object.__class__` is a settable attribute to the type checker; here it is read-only, and
    # answers the original class.
    @property  # type: ignore[misc]
    def __class__(self) -> type:
        cls = type(self)
        return cls._raceway_base if "_raceway_wrapper" in cls.__dict__ else cls

    # Copies and pickles are of the original class, made from a read of everything (each
    # mixin's `_raceway_original` builds the plain object).
    def copy(self: _Wrapper[_T]) -> _T:
        self._raceway_read_all()
        return self._raceway_original()

    def __copy__(self: _Wrapper[_T]) -> _T:
        self._raceway_read_all()
        return self._raceway_original()

    def __reduce_ex__(self: _Wrapper[object], protocol: SupportsIndex) -> tuple[Any, ...]:
        self._raceway_read_all()
        return _reduced(self._raceway_original())

    def __reduce__(self: _Wrapper[object]) -> tuple[Any, ...]:
        self._raceway_read_all()
        return _reduced(self._raceway_original())


def _reading_first(cls: type, *names: str) -> None:
    """Gives ``cls`` the methods ``names`` that read the whole container (`_raceway_read_all`)
    and then do what the next class in the MRO does (the container's own method)."""
    for name in names:

        def method(self: _Wrapper[object], *args: object, _name: str = name) -> Any:
            self._raceway_read_all()
            return getattr(super(cls, self), _name)(*args)

        method.__name__ = method.__qualname__ = name
        setattr(cls, name, method)


def _on_original(cls: type, *names: str) -> None:
    """Gives ``cls`` the methods ``names`` that read the whole container and then do what the
    original class does, on a copy of the contents as an instance of it (a set's algebra)."""
    for name in names:

        def method(self: _Wrapper[object], *args: object, _name: str = name) -> Any:
            self._raceway_read_all()
            return getattr(self._raceway_original(), _name)(*args)

        method.__name__ = method.__qualname__ = name
        setattr(cls, name, method)


class _DictMixin(_LooksLikeTheOriginal, _AsDict[_K, _V]):
    """Recording overrides for a dict (or a dict subclass: each call goes to the next class)."""

    __slots__ = ()
    _raceway_shared = True
    _raceway_base: ClassVar[type[dict[Any, Any]]] = dict
    _raceway_rec: TrackedVariables  # a slot of each concrete class

    def __init__(self, *args: Any, **kwargs: Any) -> None:  # a library's type(d)(...): untracked
        self._raceway_rec = _off()
        super().__init__(*args, **kwargs)

    # -- items -----------------------------------------------------------------------------
    def __getitem__(self, key: _K) -> _V:
        try:
            value = super().__getitem__(key)
        except KeyError:
            self._raceway_rec.read(key, ABSENT)
            raise
        rec = self._raceway_rec
        emit(rec, rec.names.get(key) or rec.var(key), None, value, "Read")
        return value

    def __setitem__(self, key: _K, value: _V) -> None:
        new = not dict.__contains__(self, key)
        super().__setitem__(key, value)
        rec = self._raceway_rec
        emit(rec, rec.names.get(key) or rec.var(key), None, value, "Write")
        if new:
            rec.write_structure(dict.__len__(self))

    def __delitem__(self, key: _K) -> None:
        rec = self._raceway_rec
        try:
            super().__delitem__(key)
        except KeyError:
            rec.read(key, ABSENT)
            raise
        rec.write(key, ABSENT)
        rec.write_structure(dict.__len__(self))

    def __contains__(self, key: object) -> bool:
        found = super().__contains__(key)
        self._raceway_rec.read(key, _dict_get(self, key, ABSENT) if found else ABSENT)
        return found

    @overload
    def get(self, key: _K, default: None = None) -> _V | None: ...
    @overload
    def get(self, key: _K, default: _V) -> _V: ...
    @overload
    def get(self, key: _K, default: _T) -> _V | _T: ...

    def get(self, key: _K, default: object = None) -> object:
        value = super().get(key, _MISSING)
        self._raceway_rec.read(key, ABSENT if value is _MISSING else value)
        return default if value is _MISSING else value

    @overload
    def setdefault(self: _DictMixin[_K, _T | None], key: _K, default: None = None) -> _T | None: ...
    @overload
    def setdefault(self, key: _K, default: _V) -> _V: ...

    def setdefault(self, key: _K, default: Any = None) -> Any:  # Any: as the overloads say
        present = dict.__contains__(self, key)
        value = super().setdefault(key, default)
        rec = self._raceway_rec
        if present:
            _atomic(rec, key, None, value, "AtomicRead")
        else:
            _atomic(rec, key, ABSENT, value, "AtomicRMW")
            rec.write_structure(dict.__len__(self))
        return value

    @overload
    def pop(self, key: _K, /) -> _V: ...
    @overload
    def pop(self, key: _K, default: _V, /) -> _V: ...
    @overload
    def pop(self, key: _K, default: _T, /) -> _V | _T: ...

    def pop(self, key: _K, *default: object) -> object:
        value = super().pop(key, _MISSING)
        rec = self._raceway_rec
        if value is _MISSING:
            rec.read(key, ABSENT)
            if default:
                return default[0]
            raise KeyError(key)
        _atomic(rec, key, value, ABSENT, "AtomicRMW")
        rec.write_structure(dict.__len__(self))
        return value

    def popitem(self) -> tuple[_K, _V]:
        try:
            key, value = super().popitem()
        except KeyError:
            self._raceway_rec.read_structure(0, atomic=True)
            raise
        rec = self._raceway_rec
        _atomic(rec, key, value, ABSENT, "AtomicRMW")
        rec.write_structure(dict.__len__(self))
        return key, value

    # `dict.update`'s own rule: a mapping (anything with ``keys``) or pairs, then keywords.
    def update(self, *args: Any, **kwargs: _V) -> None:
        if len(args) > 1:
            raise TypeError(f"update expected at most 1 argument, got {len(args)}")
        if args:
            other = args[0]
            if hasattr(other, "keys"):
                for k in other.keys():
                    self[k] = other[k]
            else:
                for k, v in other:
                    self[k] = v
        for k, v in kwargs.items():
            self[k] = v  # type: ignore[index]  # keywords: only a dict[str, ...] accepts them

    # In-place ``|`` takes pairs too, where ``|`` takes only a dict: typeshed's `dict.__ior__`
    # carries the same exemption.
    @overload  # type: ignore[override, misc]
    def __ior__(self, other: SupportsKeysAndGetItem[_K, _V]) -> Self: ...
    @overload
    def __ior__(self, other: Iterable[tuple[_K, _V]]) -> Self: ...

    def __ior__(  # type: ignore[misc]
        self, other: SupportsKeysAndGetItem[_K, _V] | Iterable[tuple[_K, _V]]
    ) -> Self:
        if not isinstance(other, (dict, collections.abc.Mapping)) and not hasattr(other, "keys"):
            try:
                iter(other)
            except TypeError:
                return NotImplemented
        self.update(other)
        return self

    def clear(self) -> None:
        rec = self._raceway_rec
        keys = list(itertools.islice(dict.__iter__(self), WHOLE_ITEMS))
        super().clear()
        for k in keys:
            rec.write(k, ABSENT)
        rec.write_structure(0)

    # -- the whole -------------------------------------------------------------------------
    def __len__(self) -> int:
        n = super().__len__()
        self._raceway_rec.read_structure(n, atomic=True)
        return n

    def __iter__(self) -> Iterator[_K]:
        self._raceway_rec.read_structure(dict.__len__(self), atomic=False)
        return super().__iter__()

    def __reversed__(self) -> Iterator[_K]:
        self._raceway_rec.read_structure(dict.__len__(self), atomic=False)
        return super().__reversed__()

    # A dict's own views (``dict_keys``...) cannot be subclassed or made for another object: these
    # are `collections.abc` views that record, with the same set operations and repr.
    def keys(self) -> _KeysView[_K]:  # type: ignore[override]
        return _KeysView(self)

    def values(self) -> _ValuesView[_V]:  # type: ignore[override]
        return _ValuesView(self)

    def items(self) -> _ItemsView[_K, _V]:  # type: ignore[override]
        return _ItemsView(self)

    def _raceway_read_all(self) -> None:
        rec = self._raceway_rec
        rec.read_structure(dict.__len__(self), atomic=False)
        for k in list(itertools.islice(dict.__iter__(self), WHOLE_ITEMS)):
            rec.read(k, dict.get(self, k, ABSENT))

    __hash__ = None

    @overload
    def __or__(self, other: dict[_K, _V]) -> dict[_K, _V]: ...
    @overload
    def __or__(self, other: dict[_T, _S]) -> dict[_K | _T, _V | _S]: ...

    def __or__(self, other: object) -> object:
        if not isinstance(other, dict):
            return NotImplemented
        self._raceway_read_all()
        return self._raceway_original() | other

    @overload
    def __ror__(self, other: dict[_K, _V]) -> dict[_K, _V]: ...
    @overload
    def __ror__(self, other: dict[_T, _S]) -> dict[_K | _T, _V | _S]: ...

    def __ror__(self, other: object) -> object:
        if not isinstance(other, dict):
            return NotImplemented
        self._raceway_read_all()
        return other | self._raceway_original()

    def _raceway_original(self) -> dict[_K, _V]:
        """A copy of the contents as an instance of the original class (not recorded)."""
        return _original_dict(self, type(self)._raceway_base)


_reading_first(_DictMixin, "__eq__", "__ne__", "__repr__")


def _original_dict(wrapper: _DictMixin[_K, _V], base: type[dict[Any, Any]]) -> dict[_K, _V]:
    items: list[tuple[_K, _V]]
    if issubclass(base, collections.OrderedDict):
        # `wrapper`'s class is made from `base` (`_container_class`): an OrderedDict too.
        items = list(collections.OrderedDict.items(wrapper))  # type: ignore[arg-type]
    else:
        items = list(dict.items(wrapper))
    if base is dict:
        return dict(items)
    new: dict[_K, _V]
    if issubclass(base, collections.defaultdict):
        made = base.__new__(base)
        # `wrapper`'s class is made from `base` (`_container_class`): a defaultdict too.
        collections.defaultdict.__init__(made, wrapper.default_factory)  # type: ignore[attr-defined]
        dict.update(made, items)
        new = made
    elif issubclass(base, collections.OrderedDict):
        new = base.__new__(base)
        collections.OrderedDict.__init__(new)
        collections.OrderedDict.update(new, items)
    else:
        new = base.__new__(base)
        dict.update(new, items)
    _copy_attributes(wrapper, new)
    return new


def _reduced(original: _T) -> tuple[Callable[[tuple[_T]], _T], tuple[tuple[_T]]]:
    """Pickling (and ``copy.deepcopy``) of a wrapper: the copy of its contents as an instance
    of the original class, handed back as it is when unpickled. The original's own pickling
    carries it, with any protocol, and unpickling needs nothing of Raceway."""
    return operator.itemgetter(0), ((original,),)


def _copy_attributes(source: object, target: object) -> None:
    """Instance attributes of a container subclass (its ``__dict__``), shallow."""
    try:
        attrs = object.__getattribute__(source, "__dict__")
    except AttributeError:
        return
    target.__dict__.update(attrs)


def _atomic(rec: TrackedVariables, key: object, old: object, new: object, access: str) -> None:
    emit(rec, rec.var(key), old if access != "AtomicRead" else None, new, access)


def _view_keys(mapping: _DictMixin[_K, Any]) -> Iterator[_K]:
    """What a dict view's iteration records first: the structure (then each view the first
    items)."""
    rec = mapping._raceway_rec
    rec.read_structure(dict.__len__(mapping), atomic=False)
    return dict.__iter__(mapping)


class _KeysView(collections.abc.KeysView[_K]):
    __slots__ = ()
    _mapping: _DictMixin[_K, Any]

    def __iter__(self) -> Iterator[_K]:
        return _view_keys(self._mapping)

    def __reversed__(self) -> Iterator[_K]:
        return reversed(self._mapping)

    def __repr__(self) -> str:
        return f"dict_keys({list(self)!r})"


class _ValuesView(collections.abc.ValuesView[_V]):
    __slots__ = ()
    _mapping: _DictMixin[Any, _V]

    def __iter__(self) -> Iterator[_V]:
        mapping = self._mapping
        rec = mapping._raceway_rec
        for n, key in enumerate(_view_keys(mapping)):
            value = dict.__getitem__(mapping, key)
            if n < WHOLE_ITEMS:
                rec.read(key, value)
            yield value

    def __reversed__(self) -> Iterator[_V]:
        mapping = self._mapping
        for key in reversed(mapping):
            yield dict.__getitem__(mapping, key)

    def __repr__(self) -> str:
        return f"dict_values({list(self)!r})"


class _ItemsView(collections.abc.ItemsView[_K, _V]):
    __slots__ = ()
    _mapping: _DictMixin[_K, _V]

    def __iter__(self) -> Iterator[tuple[_K, _V]]:
        mapping = self._mapping
        rec = mapping._raceway_rec
        for n, key in enumerate(_view_keys(mapping)):
            value = dict.__getitem__(mapping, key)
            if n < WHOLE_ITEMS:
                rec.read(key, value)
            yield key, value

    def __reversed__(self) -> Iterator[tuple[_K, _V]]:
        mapping = self._mapping
        for key in reversed(mapping):
            yield key, dict.__getitem__(mapping, key)

    def __contains__(self, item: object) -> bool:
        if not isinstance(item, tuple) or len(item) != 2:
            return False
        key, value = item
        try:
            found = self._mapping[key]
        except KeyError:
            return False
        return found is value or found == value

    def __repr__(self) -> str:
        return f"dict_items({list(self)!r})"


class SharedDict(_DictMixin[_K, _V], dict[_K, _V]):
    """A ``dict`` that records its reads and writes (made by `shared`)."""

    __slots__ = ("_raceway_rec",)
    _raceway_wrapper = True

    # The two hottest methods without ``super()`` (the base is ``dict`` itself).
    def __getitem__(self, key: _K) -> _V:
        try:
            value = _dict_getitem(self, key)
        except KeyError:
            self._raceway_rec.read(key, ABSENT)
            raise
        rec = self._raceway_rec
        emit(rec, rec.names.get(key) or rec.var(key), None, value, "Read")
        return value

    def __setitem__(self, key: _K, value: _V) -> None:
        new = not _dict_contains(self, key)
        _dict_setitem(self, key, value)
        rec = self._raceway_rec
        emit(rec, rec.names.get(key) or rec.var(key), None, value, "Write")
        if new:
            rec.write_structure(_dict_len(self))


_dict_getitem, _dict_setitem = dict.__getitem__, dict.__setitem__
_dict_contains, _dict_len = dict.__contains__, dict.__len__
_dict_get: Callable[[dict[Any, Any], object, object], object] = dict.get
"""`dict.get` taking any object as a key, as `dict.__contains__` does (an unhashable one raises)."""


# ----------------------------------------------------------------------------------------------
# list
# ----------------------------------------------------------------------------------------------
class _ListMixin(_LooksLikeTheOriginal, _AsList[_T]):
    __slots__ = ()
    _raceway_shared = True
    _raceway_base: ClassVar[type[list[Any]]] = list
    _raceway_rec: TrackedVariables  # a slot of each concrete class

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._raceway_rec = _off()
        super().__init__(*args, **kwargs)

    def _raceway_index(self, i: SupportsIndex) -> int | None:
        try:
            n = i.__index__()
        except AttributeError:
            return None
        return n + list.__len__(self) if n < 0 else n

    def _raceway_slice(self, s: slice, write: bool) -> None:
        rec = self._raceway_rec
        indexes = range(*s.indices(list.__len__(self)))
        for i in itertools.islice(indexes, WHOLE_ITEMS):
            if write:
                rec.write(i, list.__getitem__(self, i) if i < list.__len__(self) else ABSENT)
            else:
                rec.read(i, list.__getitem__(self, i))

    @overload
    def __getitem__(self, i: SupportsIndex) -> _T: ...
    @overload
    def __getitem__(self, i: slice) -> list[_T]: ...

    def __getitem__(self, i: SupportsIndex | slice) -> _T | list[_T]:
        value = super().__getitem__(i)
        rec = self._raceway_rec
        if i.__class__ is int:
            if i < 0:
                i += list.__len__(self)
            emit(rec, rec.names.get(i) or rec.var(i), None, value, "Read")
        elif isinstance(i, slice):
            rec.read_structure(list.__len__(self), atomic=True)
            self._raceway_slice(i, write=False)
        else:
            n = self._raceway_index(i)
            if n is not None:
                rec.read(n, value)
        return value

    @overload
    def __setitem__(self, i: SupportsIndex, value: _T) -> None: ...
    @overload
    def __setitem__(self, i: slice, value: Iterable[_T]) -> None: ...

    def __setitem__(self, i: SupportsIndex | slice, value: _T | Iterable[_T]) -> None:
        if isinstance(i, slice):
            super().__setitem__(i, value)  # type: ignore[assignment]  # with a slice, an iterable (overload 2)
            self._raceway_rec.write_structure(list.__len__(self))
            self._raceway_slice(i, write=True)
            return
        super().__setitem__(i, value)  # type: ignore[assignment]  # with an index, an item (overload 1)
        n = self._raceway_index(i)
        if n is not None:
            self._raceway_rec.write(n, value)

    def __delitem__(self, i: SupportsIndex | slice) -> None:
        super().__delitem__(i)
        self._raceway_rec.write_structure(list.__len__(self))

    def _raceway_grew(self) -> None:
        self._raceway_rec.write_structure(list.__len__(self))

    def append(self, value: _T) -> None:
        super().append(value)
        self._raceway_grew()

    def extend(self, values: Iterable[_T]) -> None:
        super().extend(values)
        self._raceway_grew()

    def insert(self, i: SupportsIndex, value: _T) -> None:
        super().insert(i, value)
        self._raceway_grew()

    def pop(self, *i: SupportsIndex) -> _T:
        try:
            value = super().pop(*i)
        except IndexError:
            self._raceway_rec.read_structure(list.__len__(self), atomic=True)
            raise
        self._raceway_grew()
        return value

    def remove(self, value: _T) -> None:
        try:
            super().remove(value)
        except ValueError:
            self._raceway_rec.read_structure(list.__len__(self), atomic=False)
            raise
        self._raceway_grew()

    def clear(self) -> None:
        super().clear()
        self._raceway_grew()

    def sort(self, *args: Any, **kwargs: Any) -> None:  # list.sort's keywords (`key`, `reverse`)
        super().sort(*args, **kwargs)
        self._raceway_rewritten()

    def reverse(self) -> None:
        super().reverse()
        self._raceway_rewritten()

    def _raceway_rewritten(self) -> None:
        rec = self._raceway_rec
        rec.write_structure(list.__len__(self))
        for i in range(min(list.__len__(self), WHOLE_ITEMS)):
            rec.write(i, list.__getitem__(self, i))

    # ``+=`` takes any iterable, ``+`` only a list: typeshed's `list.__iadd__` carries the same
    # exemption.
    def __iadd__(self, values: Iterable[_T]) -> Self:  # type: ignore[override, misc]
        super().__iadd__(values)
        self._raceway_grew()
        return self

    def __imul__(self, n: SupportsIndex) -> Self:
        super().__imul__(n)
        self._raceway_grew()
        return self

    def __len__(self) -> int:
        n = super().__len__()
        self._raceway_rec.read_structure(n, atomic=True)
        return n

    def __iter__(self) -> Iterator[_T]:
        self._raceway_read_all()
        return list.__iter__(self)

    def __reversed__(self) -> Iterator[_T]:
        self._raceway_read_all()
        return list.__reversed__(self)

    def __contains__(self, value: object) -> bool:
        self._raceway_rec.read_structure(list.__len__(self), atomic=False)
        return super().__contains__(value)

    def index(self, *args: Any) -> int:  # list.index's (value, start, stop)
        self._raceway_rec.read_structure(list.__len__(self), atomic=False)
        return super().index(*args)

    def count(self, value: _T) -> int:
        self._raceway_rec.read_structure(list.__len__(self), atomic=False)
        return super().count(value)

    def _raceway_read_all(self) -> None:
        rec = self._raceway_rec
        n = list.__len__(self)
        rec.read_structure(n, atomic=False)
        for i in range(min(n, WHOLE_ITEMS)):
            try:
                rec.read(i, list.__getitem__(self, i))
            except IndexError:  # another thread shrank it meanwhile
                break

    __hash__ = None

    @overload
    def __add__(self, other: list[_T]) -> list[_T]: ...
    @overload
    def __add__(self, other: list[_S]) -> list[_S | _T]: ...

    def __add__(self, other: object) -> object:
        if not isinstance(other, list):
            return NotImplemented
        self._raceway_read_all()
        return self._raceway_original() + other

    def __radd__(self, other: object) -> object:
        if not isinstance(other, list):
            return NotImplemented
        self._raceway_read_all()
        return other + self._raceway_original()

    def __mul__(self, n: SupportsIndex) -> list[_T]:
        self._raceway_read_all()
        return self._raceway_original() * n

    __rmul__ = __mul__

    def _raceway_original(self) -> list[_T]:
        base = type(self)._raceway_base
        items = list.copy(self)
        if base is list:
            return items
        new: list[_T] = base.__new__(base)
        list.extend(new, items)
        _copy_attributes(self, new)
        return new


_reading_first(_ListMixin, "__eq__", "__ne__", "__lt__", "__le__", "__gt__", "__ge__", "__repr__")


class SharedList(_ListMixin[_T], list[_T]):
    """A ``list`` that records its reads and writes (made by `shared`)."""

    __slots__ = ("_raceway_rec",)
    _raceway_wrapper = True


# ----------------------------------------------------------------------------------------------
# set
# ----------------------------------------------------------------------------------------------
class _SetMixin(_LooksLikeTheOriginal, _AsSet[_T]):
    __slots__ = ()
    _raceway_shared = True
    _raceway_base: ClassVar[type[set[Any]]] = set
    _raceway_rec: TrackedVariables  # a slot of each concrete class

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._raceway_rec = _off()
        super().__init__(*args, **kwargs)

    def __contains__(self, value: object) -> bool:
        found = super().__contains__(value)
        self._raceway_rec.read(value, found)
        return found

    def add(self, value: _T) -> None:
        new = not set.__contains__(self, value)
        super().add(value)
        rec = self._raceway_rec
        _atomic(rec, value, not new, True, "AtomicRMW")
        if new:
            rec.write_structure(set.__len__(self))

    def discard(self, value: object) -> None:
        present = set.__contains__(self, value)
        super().discard(value)
        self._raceway_removed(value, present)

    def remove(self, value: _T) -> None:
        try:
            super().remove(value)
        except KeyError:
            self._raceway_rec.read(value, False)
            raise
        self._raceway_removed(value, True)

    def _raceway_removed(self, value: object, present: bool) -> None:
        rec = self._raceway_rec
        _atomic(rec, value, present, False, "AtomicRMW")
        if present:
            rec.write_structure(set.__len__(self))

    def pop(self) -> _T:
        try:
            value = super().pop()
        except KeyError:
            self._raceway_rec.read_structure(0, atomic=True)
            raise
        self._raceway_removed(value, True)
        return value

    def clear(self) -> None:
        rec = self._raceway_rec
        gone = list(itertools.islice(set.__iter__(self), WHOLE_ITEMS))
        super().clear()
        for value in gone:
            _atomic(rec, value, True, False, "AtomicRMW")
        rec.write_structure(0)

    def update(self, *others: Iterable[_T]) -> None:
        for other in others:
            for value in other:
                self.add(value)

    def __ior__(self, other: AbstractSet[_T]) -> Self:  # type: ignore[override,misc]  # as set's
        if not isinstance(other, (set, frozenset)):
            return NotImplemented
        self.update(other)
        return self

    def _raceway_changed(self, before: set[_T], others: tuple[Iterable[object], ...]) -> None:
        """After an in-place operation: the elements whose membership changed, and the
        structure."""
        rec = self._raceway_rec
        after = set.copy(self)
        for value in itertools.islice(itertools.chain(before - after, after - before), WHOLE_ITEMS):
            _atomic(rec, value, value in before, value in after, "AtomicRMW")
        rec.write_structure(set.__len__(self))

    def _raceway_inplace(self, name: str, *others: Iterable[object]) -> object:
        before = set.copy(self)
        result = getattr(super(), name)(*others)
        self._raceway_changed(before, others)
        return result

    def intersection_update(self, *others: Iterable[object]) -> None:
        self._raceway_inplace("intersection_update", *others)

    def difference_update(self, *others: Iterable[object]) -> None:
        self._raceway_inplace("difference_update", *others)

    def symmetric_difference_update(self, other: Iterable[_T]) -> None:
        self._raceway_inplace("symmetric_difference_update", other)

    def __iand__(self, other: AbstractSet[object]) -> Self:
        if not isinstance(other, (set, frozenset)):
            return NotImplemented
        self._raceway_inplace("__iand__", other)
        return self

    def __isub__(self, other: AbstractSet[object]) -> Self:
        if not isinstance(other, (set, frozenset)):
            return NotImplemented
        self._raceway_inplace("__isub__", other)
        return self

    def __ixor__(self, other: AbstractSet[_T]) -> Self:  # type: ignore[override,misc]  # as set's
        if not isinstance(other, (set, frozenset)):
            return NotImplemented
        self._raceway_inplace("__ixor__", other)
        return self

    def __len__(self) -> int:
        n = super().__len__()
        self._raceway_rec.read_structure(n, atomic=True)
        return n

    def __iter__(self) -> Iterator[_T]:
        self._raceway_read_all()
        return set.__iter__(self)

    def _raceway_read_all(self) -> None:
        rec = self._raceway_rec
        rec.read_structure(set.__len__(self), atomic=False)
        for value in list(itertools.islice(set.__iter__(self), WHOLE_ITEMS)):
            rec.read(value, True)

    __hash__ = None

    def __repr__(self) -> str:
        self._raceway_read_all()
        key = (id(self), threading.get_ident())
        if key in _in_repr:  # the set holds (something that holds) itself
            return f"{type(self)._raceway_base.__name__}(...)"
        _in_repr.add(key)
        try:
            return repr(self._raceway_original())
        finally:
            _in_repr.discard(key)

    def _raceway_original(self) -> set[_T]:
        base = type(self)._raceway_base
        items = set.copy(self)
        if base is set:
            return items
        new: set[_T] = base.__new__(base)
        set.update(new, items)
        _copy_attributes(self, new)
        return new


# The comparisons read the whole set, then compare as a set does; the algebra reads it and
# answers with an instance of the original class.
_reading_first(
    _SetMixin, "__eq__", "__ne__", "__lt__", "__le__", "__gt__", "__ge__", "issubset", "issuperset", "isdisjoint"
)
_on_original(
    _SetMixin,
    "__or__",
    "__and__",
    "__sub__",
    "__xor__",
    "__ror__",
    "__rand__",
    "__rsub__",
    "__rxor__",
    "union",
    "intersection",
    "difference",
    "symmetric_difference",
)
_in_repr: set[tuple[int, int]] = set()


class SharedSet(_SetMixin[_T], set[_T]):
    """A ``set`` that records its reads and writes (made by `shared`)."""

    __slots__ = ("_raceway_rec",)
    _raceway_wrapper = True


# ----------------------------------------------------------------------------------------------
# Subclasses of dict, list and set (defaultdict, OrderedDict, Counter, your own)
# ----------------------------------------------------------------------------------------------
_Shared = _DictMixin[Any, Any] | _ListMixin[Any] | _SetMixin[Any]
"""A wrapper (of a container of anything)."""
_Container = dict[Any, Any] | list[Any] | set[Any]
_C = TypeVar("_C", bound=_Container)

_MIXINS = ((dict, _DictMixin, SharedDict), (list, _ListMixin, SharedList), (set, _SetMixin, SharedSet))
_ALWAYS_OURS = frozenset(
    {
        "__getitem__",
        "__setitem__",
        "__delitem__",
        "__contains__",
        "__len__",
        "__iter__",
        "__reversed__",
        "__init__",
        "__class__",
        "__reduce_ex__",
        "__reduce__",
        "__copy__",
        "copy",
        "__hash__",
        "__slots__",
        "__module__",
        "__qualname__",
        "__doc__",
        "__dict__",
        "__weakref__",
    }
)
"""Recording overrides a subclass's own methods never replace (they call the subclass's)."""
_container_classes: Dict[type, type[_Shared]] = {dict: SharedDict, list: SharedList, set: SharedSet}
_classes_lock = threading.Lock()


def _container_class(base: type) -> type[_Shared]:
    """The wrapper class of instances of ``base`` (a dict, list or set class): ``base`` itself
    after the mixin that records, made once."""
    found = _container_classes.get(base)
    if found is not None:
        return found
    with _classes_lock:
        found = _container_classes.get(base)
        if found is None:
            builtin, mixin, _ = next(m for m in _MIXINS if issubclass(base, m[0]))
            namespace: Dict[str, Any] = {
                "__slots__": ("_raceway_rec",),
                "_raceway_base": base,
                "_raceway_wrapper": True,
                "__module__": base.__module__,
                "__qualname__": base.__qualname__,
            }
            # A method the subclass defines itself (Counter.update, OrderedDict.popitem...) stays
            # the subclass's: it reaches the items through the overrides that record.
            for attr in vars(mixin):
                if attr in _ALWAYS_OURS or attr.startswith("_raceway"):
                    continue
                for klass in base.__mro__:
                    if klass is builtin:
                        break
                    if attr in vars(klass):
                        namespace[attr] = vars(klass)[attr]
                        break
            found = type(base.__name__, (mixin, base), namespace)
            _container_classes[base] = found
    return found


def _fill(wrapper: _Shared, obj: _Container) -> None:
    """Puts ``obj``'s contents (and instance attributes) in ``wrapper``, an empty instance of
    ``_container_class(type(obj))``, without recording. (The wrapper's class is obj's after a
    mixin: each kind test answers the same for both; it is asked of both for the checker.)"""
    if isinstance(obj, dict) and isinstance(wrapper, dict):
        if isinstance(obj, collections.defaultdict) and isinstance(wrapper, collections.defaultdict):
            wrapper.default_factory = obj.default_factory
        if isinstance(obj, collections.OrderedDict) and isinstance(wrapper, collections.OrderedDict):
            collections.OrderedDict.__init__(wrapper)
            collections.OrderedDict.update(wrapper, list(collections.OrderedDict.items(obj)))
        else:
            dict.update(wrapper, dict.items(obj))
    elif isinstance(obj, list) and isinstance(wrapper, list):
        list.extend(wrapper, list.__iter__(obj))
    elif isinstance(obj, set) and isinstance(wrapper, set):
        set.update(wrapper, set.__iter__(obj))
    _copy_attributes(obj, wrapper)


def _wrap_container(obj: _C, name: str, client: Optional[StateTracker], deep: bool) -> _C:
    cls = _container_class(type(obj))
    # `__new__` of whichever wrapper class it is (the checker cannot pick one from the union).
    wrapper: _Shared = cls.__new__(cls)  # type: ignore[type-var]
    wrapper._raceway_rec = _off()
    _fill(wrapper, obj)
    if deep:
        _wrap_nested(wrapper, name, client)
    wrapper._raceway_rec = TrackedVariables(name, client)
    return wrapper  # type: ignore[return-value]  # an instance of a subclass of obj's class


def _wrap_nested(wrapper: _Shared, name: str, client: Optional[StateTracker]) -> None:
    rec = TrackedVariables(name, client)
    if isinstance(wrapper, dict):
        for key, value in list(dict.items(wrapper)):
            if _wrappable(value):
                dict.__setitem__(wrapper, key, _wrap_container(value, rec.var(key), client, True))
    elif isinstance(wrapper, list):
        for i, value in enumerate(list.copy(wrapper)):
            if _wrappable(value):
                list.__setitem__(wrapper, i, _wrap_container(value, rec.var(i), client, True))


def _wrappable(value: object) -> bool:
    return isinstance(value, (dict, list, set)) and not getattr(type(value), "_raceway_shared", False)


# ----------------------------------------------------------------------------------------------
# Entry point
# ----------------------------------------------------------------------------------------------
def shared(obj: _T, name: str, *, client: Optional[StateTracker] = None, deep: bool = False) -> _T:
    """``obj``, tracked: every read and write of its items (a dict, list or set, or a
    subclass of one) or of its attributes (any other object) is recorded as a ``StateChange``
    of ``name[key]`` / ``name.attr`` (see the module's documentation).

    A dict, list or set comes back as a new object holding ``obj``'s contents: use it in
    place of ``obj``. Any other object is tracked in place and returned. ``client``: where the
    accesses are recorded (default: the client automatic tracking records to, looked up at each
    access). ``deep``: wrap the dicts, lists and sets nested in a container too.

    Raises ``TypeError`` for immutable values (nothing to track) and for objects whose class
    cannot be tracked in place (instances of C types other than dict, list and set, classes
    with a custom metaclass or ``__init_subclass__``): track those by hand
    (``track_state_change``) or through `raceway.attributes`."""
    if not isinstance(name, str) or not name:
        raise TypeError(f"shared() needs a non-empty str name, got {name!r}")
    if is_shared(obj):
        return obj
    if isinstance(obj, (dict, list, set)):
        return _wrap_container(obj, name, client, deep)
    from ._shared_object import share_object

    return share_object(obj, name, client)


def is_shared(obj: object) -> bool:
    """Whether ``obj`` is tracked by `shared`."""
    return bool(getattr(type(obj), "_raceway_shared", False))
