"""The command line: ``python -m raceway analyze FILE...``, ``python -m raceway demo``,
``python -m raceway doctor``, ``python -m raceway --version`` (docs/cli.md).

Exit codes:

- 0: the files were analysed (races found or not), or the demo ran as expected.
- 1: ``analyze --fail-on-race`` found at least one race (after suppressions); the demo did not
  show what it should (a lost update, then a clean run).
- 2: a usage error, an input file or suppressions file that cannot be read, an output file that
  cannot be written, or input files with content but not one raceway record.
- 1 also: ``doctor`` found a problem (it prints the fix).
- 3: the detector itself failed (a bug: please report it with the input).

Every error is one line on stderr, never a traceback. What ``analyze`` skipped in its input
(broken or foreign lines, a truncated last line...) is reported on stderr, per file and reason;
the report goes to stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, Dict, NoReturn, Optional, Sequence, TextIO

from . import __version__

PROG = "python -m raceway"

EXIT_OK = 0
EXIT_RACES = 1
EXIT_USAGE = 2
EXIT_INTERNAL = 3


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error (and exit code 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description="Raceway: race detection for Python services. See docs/cli.md.",
    )
    parser.add_argument("--version", action="version", version=f"raceway {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    analyze = commands.add_parser(
        "analyze",
        help="find races in records files (Config(events_file=...))",
        description=(
            "Find races in records files written with Config(events_file=PATH): the events of "
            "all the files (several services and processes, rotated backups PATH.1..., .gz) are "
            "merged into one order by time and analysed together. Broken, foreign and truncated "
            "lines are skipped and reported on stderr. Exit 0 when analysed, even with races "
            "(1 with --fail-on-race), 2 for unreadable input or usage errors."
        ),
    )
    analyze.add_argument("files", nargs="+", metavar="FILE", help="records files (plain or gzip)")
    analyze.add_argument(
        "--json",
        action="store_true",
        help='print {"races": [...], "skipped": {...}, "stats": {...}} instead of the text report',
    )
    analyze.add_argument("--sarif", metavar="OUT", help="also write a SARIF 2.1.0 report to OUT")
    analyze.add_argument("--html", metavar="OUT", help="also write an HTML report to OUT")
    analyze.add_argument(
        "--suppressions", metavar="FILE", help="suppressions file (default: $RACEWAY_SUPPRESSIONS if set)"
    )
    analyze.add_argument("--fail-on-race", action="store_true", help="exit with status 1 when a race is reported")

    demo = commands.add_parser(
        "demo",
        help="run the bundled banking demo: a lost update, then the fix",
        description=(
            "Serve a small banking service on 127.0.0.1 (a random port), fire concurrent "
            "transfers at it, print the race report (a lost update on a balance), then run the "
            "same service with the transfer under one lock and show that nothing is reported."
        ),
    )
    demo.add_argument("--html", metavar="OUT", help="also write the HTML report of the racy run to OUT")

    doctor = commands.add_parser(
        "doctor",
        help="check this installation: versions, the component, the cache, the configuration, the endpoint",
        description=(
            "Print the package and wasmtime versions, the component's SHA-256, size and imports, "
            "the compiled-component cache, the configuration Config() resolves to here (with "
            "RACEWAY_* applied, the API key masked) and whether the endpoint answers GET /health. "
            "Exit 1, with the fix printed, when something is wrong."
        ),
    )
    doctor.add_argument(
        "--endpoint",
        metavar="URL",
        help="check this endpoint instead of the resolved one ('none': skip the /health check)",
    )
    doctor.add_argument(
        "--timeout", type=float, default=2.0, metavar="SECONDS", help="how long GET /health may take (default 2)"
    )
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Runs the command line; returns the exit status (it never raises, except SystemExit
    from ``--help``/``--version``/usage errors, which argparse turns into status 0/2)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "analyze":
            return _analyze(args)
        if args.command == "demo":
            from .demo.bank import run

            return run(html=args.html, out=sys.stdout)
        if args.command == "doctor":
            from . import _doctor

            endpoint = args.endpoint
            if endpoint is None:
                endpoint = ""  # the resolved one
            elif endpoint.lower() == "none":
                endpoint = None
            return _doctor.run(sys.stdout, endpoint=endpoint, timeout=args.timeout)
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `... | head`: the reader left; nothing more to say
        _quiet_stdout()
        return EXIT_OK
    except Exception as e:  # deliberate: one line, never a traceback
        _err(f"{PROG}: internal error: {type(e).__name__}: {e} (please report it)")
        return EXIT_INTERNAL


# ----------------------------------------------------------------------------------------------
# analyze
# ----------------------------------------------------------------------------------------------
def _analyze(args: argparse.Namespace) -> int:
    from . import _analysis
    from ._analysis import REASONS, InputError

    prog = f"{PROG} analyze"
    suppressions_path = args.suppressions or os.environ.get("RACEWAY_SUPPRESSIONS") or None
    try:
        rules = _analysis.load_suppressions(suppressions_path) if suppressions_path else None
        rec = _analysis.read_records(args.files)
    except InputError as e:
        _err(f"{prog}: {e}")
        return EXIT_USAGE

    for summary in rec.files:
        if summary.skipped:
            parts = [f"{n} {REASONS.get(reason, reason)}" for reason, n in sorted(summary.skipped.items())]
            _err(f"{prog}: {summary.path}: skipped {', '.join(parts)}")
    if _analysis.has_no_records(rec):
        _err(f'{prog}: no raceway records (lines with "raceway": "records/1") in the given files')
        return EXIT_USAGE

    from ._core import CoreError

    try:
        analysis = _analysis.analyze_recording(rec, rules, keep_batches=bool(args.html))
    except CoreError as e:  # the core failed: a trap (fuel, memory, a panic) or cannot load
        _err(f"{prog}: the detector failed: {e} (please report it)")
        return EXIT_INTERNAL

    if analysis.dropped:
        reasons = "; ".join(f"{n}x {' '.join(msg.split())}" for msg, n in analysis.drop_reasons.most_common(3))
        _err(f"{prog}: the detector dropped {analysis.dropped} events it could not read ({reasons})")
    races = analysis.races
    stats = rec.stats()
    _err(
        f"{prog}: analysed {len(rec.events) - analysis.dropped} events from {stats['batches_read']} batches "
        f"({stats['processes']} processes) in {stats['files']} files: {len(races)} races"
        + (f" ({analysis.suppressed} suppressed)" if analysis.suppressed else "")
    )
    if args.sarif:
        try:
            from .report import sarif

            sarif.write(args.sarif, races, tool_version=__version__)
        except OSError as e:
            _err(f"{prog}: cannot write {args.sarif}: {e.strerror or e}")
            return EXIT_USAGE
    if args.html:
        try:
            from .report import html

            page = html.render(races, analysis.batches or [])
            with open(args.html, "w", encoding="utf-8") as f:
                f.write(page)
        except OSError as e:
            _err(f"{prog}: cannot write {args.html}: {e.strerror or e}")
            return EXIT_USAGE

    if args.json:
        doc: Dict[str, Any] = {
            "races": [r.to_json() for r in races],
            "skipped": rec.skipped,
            "stats": analysis.stats(),
        }
        _out(json.dumps(doc, indent=2, default=str) + "\n")
    else:
        from .report import text

        unmatched = rules.unmatched() if rules is not None else ()
        report = text.render(races, suppressed=analysis.suppressed, unmatched_rules=unmatched)
        _out(report if report.endswith("\n") else report + "\n")
    return EXIT_RACES if (args.fail_on_race and races) else EXIT_OK


# ----------------------------------------------------------------------------------------------
def _out(s: str, stream: Optional[TextIO] = None) -> None:
    stream = stream or sys.stdout
    stream.write(s)
    stream.flush()


def _err(line: str) -> None:
    try:
        sys.stderr.write(line + "\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


def _quiet_stdout() -> None:
    """After a broken pipe: point stdout at devnull so the interpreter's final flush is quiet."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
