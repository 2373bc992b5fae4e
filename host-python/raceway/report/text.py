"""The race report as terminal text, in the spirit of ThreadSanitizer and Go's race detector.

Per race: a headline (``CRITICAL: LOST UPDATE on variable "x"``), how often and when, each
access (type, strand, location, value, trace, locks, stack), the ordering that was missing
and how to fix it. Lost updates come first, then CRITICAL, then WARNING. Every piece of data
is cleaned (`raceway.report._format.clean`): control characters and ANSI escapes are shown
escaped, values are bounded, nothing from the data can start a new line.
"""

from __future__ import annotations

import textwrap
from typing import Iterable, List, Sequence

from ..races import LOST_UPDATE, Access, Race
from . import _explain
from ._format import clean, headline, ordered, strand_letters, strand_of, summary, value_seen

RULE = "=================="
WIDTH = 100
"""Columns the explanations are wrapped to (data tokens longer than that are not broken)."""


def _wrap(label: str, text: str, indent: str = "  ") -> List[str]:
    return textwrap.wrap(
        f"{label} {text}",
        width=WIDTH,
        initial_indent=indent,
        subsequent_indent=indent + "  ",
        break_long_words=False,
        break_on_hyphens=False,
    )


def _role(race: Race, index: int, access: Access) -> str:
    kind = clean(access.access_type, 20)
    if race.kind == LOST_UPDATE:
        return {0: kind, 1: f"{kind} in between"}.get(index, f"Stale {kind.lower()} (based on 1.)")
    return f"Earlier {kind.lower()}" if index == 0 else f"Later {kind.lower()}"


def _access(race: Race, index: int, access: Access) -> List[str]:
    letter = strand_letters(race).get(strand_of(access), "?")
    lines = [
        f"  {index + 1}. {_role(race, index, access)} by strand {letter} "
        f"({clean(access.thread_id, 80)}) at {clean(access.location)}",
        f"       value: {value_seen(access)}",
        f"       trace: {clean(access.trace_id, 80)}, service: {clean(access.service, 80)}, "
        f"at {clean(access.timestamp, 40)}",
        f"       locks held: {_explain.locks_text(access.locks)}",
    ]
    for frame in access.stack:
        lines.append(f"         {clean(frame)}")
    return lines


def _race(race: Race) -> List[str]:
    lines = [
        RULE,
        f'{headline(race)} on variable "{clean(race.variable)}"',
        f"  seen {race.count} time{'s' if race.count != 1 else ''}, first "
        f"{clean(race.first_seen, 40)}, last {clean(race.last_seen, 40)}",
        "",
    ]
    for index, access in enumerate(race.accesses):
        lines.extend(_access(race, index, access))
        lines.append("")
    lines.extend(_wrap("Missing ordering:", _explain.missing(race)))
    lines.extend(_wrap("How to fix:", _explain.fix(race)))
    lines.append(RULE)
    return lines


def render(races: Iterable[Race], *, suppressed: int = 0, unmatched_rules: Sequence[object] = ()) -> str:
    """The report for `races` as text (ends with a newline).

    `suppressed`: how many races suppressions silenced (said in the summary line).
    `unmatched_rules`: suppression rules that matched nothing (`raceway.report.Rule` or any
    object; shown with ``str``), listed so stale rules can be removed. With no races the
    report is a short ``no races found`` text."""
    races = ordered(races)
    lines: List[str] = []
    for race in races:
        lines.extend(_race(race))
        lines.append("")
    if unmatched_rules:
        lines.append("Suppression rules that matched no race (stale? remove them):")
        lines.extend(f"  {clean(rule)}" for rule in unmatched_rules)
        lines.append("")
    if races:
        lines.append(f"raceway: {summary(races, suppressed)}")
    else:
        tail = f" ({suppressed} suppressed)" if suppressed else ""
        lines.append(f"raceway: no races found{tail}")
    return "\n".join(lines) + "\n"
