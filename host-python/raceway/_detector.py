"""A race detector of its own: one sandboxed core instance fed record batches by hand.

The client runs its detector inside its pipeline instance (the flusher feeds it). This class is
for everything else that has batches: ``python -m raceway analyze`` (the records files of
several processes and services) and tests.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional

from ._core import CoreInstance, Runtime
from ._core_types import BatchSummaryJSON, DetectorOptionsJSON, FindingsJSON
from .races import Race, races_from_json

_UNCONFIGURED: Dict[str, Any] = {
    "service_name": "",
    "environment": "",
    "instance_id": "",
    "process_id": 0,
    "tags": {},
}
"""A process description with every field empty (`raceway._core_types.ProcessConfigJSON`)."""


class Detector:
    """The core's race detector (docs/races.md) over batches in the record format
    (docs/record-format.md), fed in the order the events happened.

    :param options: the detector's bounds (``max_races``, ``max_strands``, ``max_variables``,
        ``max_readers``, ``max_value_bytes``); None for the defaults.
    :raises raceway._core.CoreError: the component cannot be loaded, or ``options`` are
        refused (an unknown field or a wrong type).
    """

    def __init__(self, options: Optional[DetectorOptionsJSON] = None, runtime: Optional[Runtime] = None):
        self._core = CoreInstance(runtime or Runtime.shared())
        self._core.reset_detector(dict(options or {}))
        self._process: Optional[Dict[str, Any]] = None

    def observe(self, batch_json: str, process: Optional[Dict[str, Any]] = None) -> BatchSummaryJSON:
        """Feeds one batch; ``process`` (``service_name``, ``environment``, ``instance_id``,
        ``process_id``, ``tags``: `raceway._core_types.ProcessConfigJSON`, as a records file
        holds it, unchecked: the core checks it) labels its events in reports. Returns the
        core's summary (``events`` taken, ``dropped`` and their ``errors``; ``counts`` empty).

        :raises raceway._core.CoreError: ``batch_json`` is not a batch, or ``process`` is not
            a process description.
        """
        # Reports read each strand's service from its clock component; the process only
        # names strands whose component has none. Configured once: a configure per change of
        # process would cost a core call every few events where processes interleave.
        if self._process is None:
            self._process = dict(process) if process is not None else _UNCONFIGURED
            self._core.configure(self._process)
        summary = self._core.observe(batch_json, 0)
        return {
            "counts": summary["counts"],
            "events": summary["events"],
            "dropped": summary["dropped"],
            "errors": summary["errors"],
        }

    def findings(self) -> FindingsJSON:
        """The races so far and the detector's counters, as the core answers them."""
        return self._core.races()

    def races(self) -> List[Race]:
        """The races so far, as `raceway.races.Race` objects (the order of `findings`)."""
        return races_from_json(self.findings()["races"])
