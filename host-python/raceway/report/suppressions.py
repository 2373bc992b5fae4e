"""Suppressions: a file of rules that silence known races, modelled on ThreadSanitizer's.

One rule per line, ``type:pattern``; blank lines and lines starting with ``#`` are ignored,
spaces around the type and the pattern are stripped::

    # a counter we accept to be approximate
    variable:metrics.*
    # everything racing inside vendored code
    location:*/vendor/*
    location:app.py:12

``variable:<glob>`` silences a race whose variable matches. ``location:<glob>`` silences a race
where the location (``file:line``) of any access, or any frame of any access's stack, matches;
a pattern that ends in a line part (``:12``, ``:1*``) is matched against ``file:line``, one
without it (``*/vendor/*``) against the file alone. A location pattern is also tried on a
whole frame (``file:line in function``), so ``* in legacy_*`` silences by function name.
Globs are `fnmatch` globs (``*``, ``?``, ``[seq]``; ``*`` also matches ``/``), case-sensitive.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Iterable, List, Tuple, Union

from ..races import Race
from ._format import frame_location, split_location

TYPES = ("variable", "location")
"""The rule types a suppressions file may use."""

_LINE_PART = re.compile(r":[0-9*?\[\]!-]+$")


@dataclass(frozen=True)
class Rule:
    """One line of a suppressions file."""

    type: str
    """``variable`` or ``location``."""
    pattern: str
    """The glob, stripped."""
    source: str
    """The file the rule came from (``<string>`` for `Suppressions.parse` by default)."""
    line: int
    """1-based line number in `source`."""
    text: str
    """The line as written (without its line break)."""

    def matches(self, race: Race) -> bool:
        """Whether this rule silences `race` (see the module doc)."""
        if self.type == "variable":
            return fnmatchcase(race.variable, self.pattern)
        with_line = _LINE_PART.search(self.pattern) is not None
        for access in race.accesses:
            places = [access.location]
            for frame in access.stack:
                places.append(frame_location(frame))
                if fnmatchcase(frame, self.pattern):
                    return True
            for place in places:
                target = place if with_line else split_location(place)[0]
                if fnmatchcase(target, self.pattern):
                    return True
        return False

    def __str__(self) -> str:
        return f"{self.source}:{self.line}: {self.text}"


class Suppressions:
    """A set of `Rule` s, with a count of the races each has silenced so far.

    Thread-safe: `apply` may be called from several threads."""

    def __init__(self, rules: Iterable[Rule] = ()) -> None:
        self._rules: Tuple[Rule, ...] = tuple(rules)
        self._hits = [0] * len(self._rules)
        self._lock = threading.Lock()

    @classmethod
    def parse(cls, text: str, source: str = "<string>") -> "Suppressions":
        """Rules from the text of a suppressions file.

        Raises ValueError ``"<source>:<line>: ..."`` for a line without ``type:pattern``, an
        empty pattern or an unknown type."""
        rules: List[Rule] = []
        for number, raw in enumerate(text.splitlines(), start=1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            kind, sep, pattern = line.partition(":")
            kind, pattern = kind.strip(), pattern.strip()
            if not sep or not kind:
                raise ValueError(f"{source}:{number}: expected 'type:pattern', got {raw!r}")
            if kind not in TYPES:
                raise ValueError(
                    f"{source}:{number}: unknown suppression type {kind!r} (expected one of: {', '.join(TYPES)})"
                )
            if not pattern:
                raise ValueError(f"{source}:{number}: empty pattern in {raw!r}")
            rules.append(Rule(kind, pattern, source, number, raw.rstrip("\r\n")))
        return cls(rules)

    @classmethod
    def load(cls, path: Union[str, Path]) -> "Suppressions":
        """Rules from a UTF-8 file. Raises OSError if it cannot be read, ValueError (naming the
        file and line) for a malformed line or an unknown type, UnicodeDecodeError if it is not
        UTF-8."""
        path = Path(path)
        return cls.parse(path.read_text(encoding="utf-8"), source=str(path))

    @property
    def rules(self) -> Tuple[Rule, ...]:
        return self._rules

    def __len__(self) -> int:
        return len(self._rules)

    def apply(self, races: Iterable[Race]) -> Tuple[List[Race], List[Race]]:
        """Splits `races` into ``(kept, suppressed)``, each in the given order.

        Every rule that matches a race counts a hit (not only the first), so `unmatched` names
        only rules that silence nothing."""
        kept: List[Race] = []
        suppressed: List[Race] = []
        for race in races:
            hit = [i for i, rule in enumerate(self._rules) if rule.matches(race)]
            if hit:
                with self._lock:
                    for i in hit:
                        self._hits[i] += 1
                suppressed.append(race)
            else:
                kept.append(race)
        return kept, suppressed

    def hits(self, rule: Rule) -> int:
        """How many races `rule` has matched in `apply` so far."""
        with self._lock:
            return self._hits[self._rules.index(rule)]

    def unmatched(self) -> List[Rule]:
        """The rules that have matched no race so far (stale rules to remove), in file order;
        each carries its `Rule.line` and `Rule.text`."""
        with self._lock:
            return [rule for rule, hits in zip(self._rules, self._hits, strict=True) if hits == 0]

    def __repr__(self) -> str:
        return f"Suppressions({len(self._rules)} rules)"
