"""What ordering a race was missing and how to fix it, in words shared by every writer.

The sentences are plain text built from cleaned pieces (`_format.clean`), so they are safe to
print on a terminal; an HTML writer still escapes them as a whole.
"""

from __future__ import annotations

from typing import Sequence

from ..races import LOST_UPDATE, Access, Race
from ._format import clean, compact, is_write, strand_letters, strand_of, value_seen

_ATOMIC = ("AtomicRead", "AtomicWrite", "AtomicRMW")


def locks_text(locks: Sequence[str]) -> str:
    """``[account_lock, db]`` (each id cleaned); ``[]`` for none."""
    return "[" + ", ".join(clean(lock, 60) for lock in locks) + "]"


def verb(access: Access) -> str:
    """``read``, ``wrote``, ``atomically read``... for a sentence."""
    return {
        "Read": "read",
        "Write": "wrote",
        "AtomicRead": "atomically read",
        "AtomicWrite": "atomically wrote",
        "AtomicRMW": "atomically updated",
    }.get(access.access_type, clean(access.access_type, 20).lower())


def _who(race: Race, access: Access) -> str:
    return f"strand {strand_letters(race).get(strand_of(access), '?')}"


def missing(race: Race) -> str:
    """One paragraph: which happens-before ordering the race lacked."""
    acc = race.accesses
    if race.kind == LOST_UPDATE and len(acc) >= 3:
        read, other, stale = acc[0], acc[1], acc[-1]
        letters = strand_letters(race)
        a, b = letters.get(strand_of(read), "?"), letters.get(strand_of(other), "?")
        text = (
            f"strand {a} read {value_seen(read)} at {clean(read.location)}, strand {b} "
            f"wrote {value_seen(other)} at {clean(other.location)}, then {a} wrote "
            f"{value_seen(stale)} at {clean(stale.location)} based on the stale value "
            f"{compact(stale.old_value)}: {b}'s write was lost. {a}'s read and its write "
            f"were not one atomic step"
        )
        if read.locks and stale.locks:
            text += (
                f" (it held {locks_text(read.locks)} at the read and "
                f"{locks_text(stale.locks)} at the write, but let go in between, and {b} "
                f"wrote meanwhile)"
            )
        return text + "."
    if len(acc) < 2:
        return "the detector reported fewer than two accesses for this race."
    first, second = acc[0], acc[-1]
    kind1, kind2 = clean(first.access_type, 20).lower(), clean(second.access_type, 20).lower()
    text = (
        f"no happens-before edge orders {_who(race, first)}'s {kind1} at "
        f"{clean(first.location)} and {_who(race, second)}'s {kind2} at "
        f"{clean(second.location)} (no spawn/join, lock hand-off, queue/event or "
        f"happens_before/happens_after annotation links them)"
    )
    common = [lock for lock in first.locks if lock in second.locks]
    if common:
        text += (
            f"; both held {locks_text(common)}, yet no release->acquire of it was "
            f"recorded between the two accesses (an acquire or release not tracked?)"
        )
    else:
        text += f", and they hold no lock in common (locks: {locks_text(first.locks)} vs {locks_text(second.locks)})"
    if (first.access_type in _ATOMIC) != (second.access_type in _ATOMIC):
        text += "; one access is atomic and the other is not"
    return text + "."


def fix(race: Race) -> str:
    """One sentence: how to order the accesses."""
    if race.kind == LOST_UPDATE:
        return (
            "Hold one lock across the read and the write (make the read-modify-write one "
            "critical section), or re-read the value and compare-and-set it under the lock "
            "before writing."
        )
    acc = race.accesses
    if len(acc) >= 2:
        first, second = acc[0], acc[-1]
        if any(lock in second.locks for lock in first.locks):
            return (
                "Track every acquire and release of the shared lock (raceway.tracked_lock) so "
                "the hand-off is seen, or hand the value over through a queue/event."
            )
        if is_write(first) and is_write(second):
            return (
                "Protect both writes with the same lock, or hand the value over through a "
                "queue/event (or client.happens_before/happens_after) so one write happens "
                "before the other."
            )
    return (
        "Protect both accesses with the same lock, or hand the value over through a "
        "queue/event (or client.happens_before/happens_after) so the read happens after "
        "the write."
    )


def short(race: Race) -> str:
    """A few words for a drawing's label: what was missing."""
    if race.kind == LOST_UPDATE:
        return "stale write: read and write not atomic"
    acc = race.accesses
    if len(acc) >= 2 and any(lock in acc[-1].locks for lock in acc[0].locks):
        return "no happens-before (lock hand-off not seen)"
    return "no happens-before, no common lock"


def describe_access(access: Access) -> str:
    """``read 100`` / ``wrote 100 -> 150``: the access type as a verb and its value."""
    return f"{verb(access)} {value_seen(access)}"


__all__ = ["describe_access", "fix", "locks_text", "missing", "short", "verb"]
