"""The races as one self-contained HTML page that draws each race.

Per race: a headline, an inline SVG drawing (`_svg`: the strands as lanes on a time axis, their
recorded events as marks, the racing accesses in red linked by a dashed line labelled with the
missing ordering, the happens-before edges between the lanes as green arrows), then the
ordering that was missing, how to fix it, and a table of the accesses (strand, location,
value, locks, trace, stack).

The page loads nothing: inline CSS and SVG, no script, no font, no image, and a
Content-Security-Policy (`CSP`) that forbids everything else, so even markup that slipped
through could run no script and fetch nothing. Every string from the data is cleaned
(`_format.clean`: bounded, control characters shown escaped) and then `html.escape` d.
"""

from __future__ import annotations

import html
from typing import Any, Iterable, List, Mapping

from ..races import LOST_UPDATE, Access, Race
from . import _explain, _svg
from ._format import clean, ordered, strand_letters, strand_of, summary, value_seen
from ._timeline import EventIndex, build

CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'"
"""The page's Content-Security-Policy (a ``<meta http-equiv>``): no script at all."""

_STYLE = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;color:#1d232b;background:#eef0f3}
header{background:#1d232b;color:#fff;padding:16px 28px}
header h1{margin:0;font-size:20px} header p{margin:4px 0 0;color:#c9d1db}
main{padding:18px 28px}
.legend{display:flex;flex-wrap:wrap;gap:18px;margin:0 0 16px;font-size:13px;color:#3b4552}
.legend span{display:inline-flex;align-items:center;gap:6px}
section.race{background:#fff;border-radius:8px;box-shadow:0 1px 3px #0002;margin:0 0 22px;padding:14px 18px 16px;
  border-left:6px solid #e08a00}
section.race.critical{border-left-color:#d62728}
h2{font-size:17px;margin:0 0 2px}
h2 code{font-size:16px;background:#f3f4f6;padding:1px 5px;border-radius:4px;word-break:break-all}
.sev{display:inline-block;font-size:12px;font-weight:700;color:#fff;background:#e08a00;border-radius:4px;
  padding:1px 7px;margin-right:6px;vertical-align:2px}
.critical .sev{background:#d62728}
.meta{color:#5b6572;margin:0 0 8px;font-size:13px}
.drawing{overflow-x:auto;padding:0;border:1px solid #e3e6ea;border-radius:6px;background:#fff}
.why{margin:10px 0 4px} .why b{color:#b3261e} .fix b{color:#1b6e47}
table{border-collapse:collapse;width:100%;font-size:13px;margin-top:8px}
th,td{text-align:left;vertical-align:top;padding:5px 8px;border-bottom:1px solid #eceef1;word-break:break-word}
th{color:#5b6572;font-weight:600} td:nth-child(1),td:nth-child(3),th{white-space:nowrap}
td:nth-child(2){min-width:14em}
td code,pre{font:12px/1.4 ui-monospace,Menlo,Consolas,monospace}
pre{margin:0;white-space:pre-wrap;word-break:break-all;color:#3b4552}
.none{color:#1b6e47;font-size:16px}
svg text{font:11px system-ui,sans-serif}
.timeline{display:block;max-width:100%;height:auto}
.band-a{fill:#f7f8fa}.band-b{fill:#fff}.band-ctx{fill:#f1f3f5}
.lane{stroke:#aab2bd;stroke-width:2}.lane-ctx{stroke:#c4cad2;stroke-width:1.5;stroke-dasharray:3 3}
.badge{fill:#2d3a4a}.badge-letter{fill:#fff;font-weight:700;font-size:14px}
.lane-name{font-weight:700;font-size:13px;fill:#1d232b}.lane-id{fill:#5b6572}.lane-ctx-name{fill:#5b6572;font-style:italic}
.m-state{fill:#4c78a8}.m-acq{fill:#8e5cc8}.m-rel{fill:#fff;stroke:#8e5cc8;stroke-width:2}
.m-task{fill:#1b8a5a}.m-other{fill:#9aa3ad}
.halo{fill:#d62728;opacity:.16}.m-race{fill:#d62728;stroke:#fff;stroke-width:2}
.race-letter{fill:#fff;font-weight:700;font-size:13px}
.race-value{fill:#1d232b;font-weight:600}.race-where{fill:#a61c1c;font-weight:600}
.hb{stroke:#1b8a5a;stroke-width:2}.arrowhead{fill:#1b8a5a}.hb-label{fill:#1b6e47;font-style:italic}
.missing{stroke:#d62728;stroke-width:2.5;stroke-dasharray:7 5}
.missing-label-box{fill:#fff;stroke:#d62728;stroke-width:1.2}.missing-label{fill:#b3261e;font-weight:700}
.rmw{fill:#f4a261;opacity:.28}.rmw-label{fill:#9a4d00;font-weight:600}
.axis{stroke:#6b7580;stroke-width:1.2}.axis-head{fill:#6b7580}.axis-label{fill:#5b6572}
"""

_LEGEND = (
    '<div class="legend">'
    '<span><svg width="22" height="22"><circle cx="11" cy="11" r="9" fill="#d62728"/></svg>'
    "racing access (R read, W write)</span>"
    '<span><svg width="36" height="10"><line x1="0" y1="5" x2="36" y2="5" stroke="#d62728" '
    'stroke-width="2.5" stroke-dasharray="7 5"/></svg>missing ordering</span>'
    '<span><svg width="36" height="10"><line x1="0" y1="5" x2="30" y2="5" stroke="#1b8a5a" '
    'stroke-width="2"/><path d="M28 0 L36 5 L28 10 z" fill="#1b8a5a"/></svg>happens-before '
    "(spawn, join, lock hand-off)</span>"
    '<span><svg width="12" height="12"><circle cx="6" cy="6" r="5" fill="#4c78a8"/></svg>state '
    "access</span>"
    '<span><svg width="12" height="12"><rect x="1" y="1" width="10" height="10" '
    'fill="#8e5cc8"/></svg>lock acquire</span>'
    '<span><svg width="12" height="12"><rect x="1" y="1" width="10" height="10" fill="#fff" '
    'stroke="#8e5cc8" stroke-width="2"/></svg>lock release</span>'
    '<span><svg width="14" height="14"><path d="M7 0 L14 7 L7 14 L0 7 Z" fill="#1b8a5a"/></svg>'
    "spawn / join</span>"
    "</div>"
)


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _access_row(race: Race, index: int, access: Access) -> str:
    letter = strand_letters(race).get(strand_of(access), "?")
    stack = "\n".join(clean(frame) for frame in access.stack) or "(no stack)"
    return (
        f"<tr><td>{index}</td>"
        f"<td><b>{_e(letter)}</b> <code>{_e(clean(access.thread_id, 80))}</code></td>"
        f"<td>{_e(clean(access.access_type, 20))}</td>"
        f"<td><code>{_e(clean(access.location))}</code></td>"
        f"<td><code>{_e(value_seen(access))}</code></td>"
        f"<td><code>{_e(_explain.locks_text(access.locks))}</code></td>"
        f"<td><code>{_e(clean(access.trace_id, 80))}</code><br>"
        f"{_e(clean(access.timestamp, 40))}</td>"
        f"<td><pre>{_e(stack)}</pre></td></tr>"
    )


def _race(race: Race, number: int, index: EventIndex) -> str:
    critical = race.severity == "CRITICAL" or race.kind == LOST_UPDATE
    what = "LOST UPDATE" if race.kind == LOST_UPDATE else "DATA RACE"
    timeline = build(race, index)
    note = "" if timeline.from_records else " · drawn from the accesses alone (no records)"
    if timeline.hidden:
        note += f" · {timeline.hidden} events further from the race not drawn"
    rows = "".join(_access_row(race, i, a) for i, a in enumerate(race.accesses, start=1))
    return (
        f'<section class="race{" critical" if critical else ""}" id="race-{number}">'
        f'<h2><span class="sev">{_e(clean(race.severity, 20))}</span>{what} on '
        f"<code>{_e(clean(race.variable))}</code></h2>"
        f'<p class="meta">seen {race.count} time{"s" if race.count != 1 else ""} · first '
        f"{_e(clean(race.first_seen, 40))} · last {_e(clean(race.last_seen, 40))}{_e(note)}</p>"
        f'<div class="drawing">{_svg.render(race, timeline, str(number))}</div>'
        f'<p class="why"><b>Missing ordering:</b> {_e(_explain.missing(race))}</p>'
        f'<p class="fix"><b>How to fix:</b> {_e(_explain.fix(race))}</p>'
        f"<table><thead><tr><th>#</th><th>strand</th><th>access</th><th>location</th>"
        f"<th>value</th><th>locks held</th><th>trace / time</th><th>stack</th></tr></thead>"
        f"<tbody>{rows}</tbody></table></section>"
    )


def render(races: Iterable[Race], batches: Iterable[Mapping[str, Any]] = ()) -> str:
    """The HTML page (a complete document, UTF-8 text) for `races`.

    `batches`: the parsed lines of a records file (dicts with ``contexts``, ``states``,
    ``events``; docs/record-format.md), read once; only the events of the races' strands (and
    the spawn/join events of their parents) are kept. Empty: each race is drawn from its
    accesses alone. Malformed records are skipped. Races are ordered like the text report."""
    races = ordered(races)
    components = {strand_of(a) for race in races for a in race.accesses}
    index = EventIndex.from_batches(batches, components) if races else EventIndex()
    body: List[str] = []
    if races:
        body.append(_LEGEND)
        body.extend(_race(race, n, index) for n, race in enumerate(races, start=1))
    else:
        body.append('<p class="none">No races found.</p>')
    title = f"raceway: {summary(races)}" if races else "raceway: no races found"
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{_e(CSP)}">'
        '<meta name="referrer" content="no-referrer">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style>{_STYLE}</style></head><body>"
        f"<header><h1>Race report</h1><p>{_e(title)}</p></header>"
        f"<main>{''.join(body)}</main></body></html>\n"
    )
