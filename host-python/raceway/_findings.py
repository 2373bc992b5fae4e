"""The detector's answer (``detector.races``), by its old address: the shapes now live with
every other answer of the core in `raceway._core_types`, and this module only names them."""

from __future__ import annotations

from ._core_types import AccessJSON, DetectorStatsJSON, FindingsJSON, RaceJSON

__all__ = ["AccessJSON", "DetectorStatsJSON", "FindingsJSON", "RaceJSON"]
