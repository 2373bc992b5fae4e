"""The client's race queries: `RacewayClient.races`, `RacewayClient.race_report`, the
suppressions file they apply, and the report logged at shutdown (docs/races.md).

A mixin of `raceway.client.RacewayClient`: the state it reads is the client's, declared here.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Callable, List, Optional, Tuple

from ._core import CoreError
from .config import Config
from .races import Race, races_from_json

if TYPE_CHECKING:
    from ._flusher import Flusher
    from .report.suppressions import Suppressions

log = logging.getLogger("raceway")


class RaceQueries:
    """What the in-process detector found, as `Race` objects or as a report."""

    config: Config
    _flusher: Optional[Flusher]
    _closed: bool
    _disabled: bool
    _suppressions: Optional[Suppressions]
    _reported: bool
    _warn_once: Callable[..., None]

    def races(self, timeout: Optional[float] = 5.0) -> List[Race]:
        """The distinct races the in-process detector found so far, suppressions applied.

        Everything recorded before the call is analysed first: this waits (at most ``timeout``
        seconds; None: as long as it takes) for the background thread to take it through the
        core. With a server that does not answer, analysis waits for delivery, so the answer
        can lag (docs/races.md). Empty when detection is off (``Config.detect_races``) or the
        core has failed."""
        return self._races(timeout)[0]

    def race_report(self, timeout: Optional[float] = 5.0) -> str:
        """`races` as a readable report: each race's accesses with locations, strands, locks
        and stacks, what ordering was missing and how to fix it (docs/races.md)."""
        from .report import text

        kept, suppressed = self._races(timeout)
        unmatched = self._suppressions.unmatched() if self._suppressions is not None else ()
        return text.render(kept, suppressed=len(suppressed), unmatched_rules=unmatched)

    def _races(self, timeout: Optional[float]) -> Tuple[List[Race], List[Race]]:
        flusher = self._flusher
        if not self.config.detect_races or flusher is None or self._disabled:
            return [], []
        # Nothing to wait for when the log is empty and nothing taken from it is still being
        # analysed: a record is counted in ``held`` before it leaves the log, so an empty log
        # then nothing held means every record made before the call has been through the core.
        # (The plugin asks again at teardown and for the report: no hand-off to the flusher.)
        if not self._closed and flusher.alive and (flusher.queue or flusher.held):
            flusher.analyse_here(timeout)
        try:
            found = races_from_json(flusher.core.races()["races"])
        except CoreError as e:
            self._warn_once("races", "raceway: the race detector cannot answer: %s", e)
            return [], []
        if self._suppressions is None:
            return found, []
        kept, suppressed = self._suppressions.apply(found)
        return kept, suppressed

    def _load_suppressions(self, path: str) -> None:
        """A file that cannot be used is said once, at ERROR: races are then reported
        unsuppressed, and nothing else changes."""
        from .report.suppressions import Suppressions

        try:
            self._suppressions = Suppressions.load(path)
        except (OSError, ValueError) as e:
            log.error("raceway: cannot use the suppressions file %s (%s); races are reported unsuppressed", path, e)

    def _report_races(self) -> None:
        """At shutdown: the race report, logged once at WARNING when there are races."""
        if self._reported or not (self.config.detect_races and self.config.report_races_at_shutdown):
            return
        self._reported = True
        try:
            if self._races(0)[0]:
                log.warning("%s", self.race_report(0))
        except Exception as e:  # pragma: no cover - reporting must never fail a shutdown
            log.debug("raceway: race report failed: %s", e)
