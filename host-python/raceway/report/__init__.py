"""Report writers and suppressions for the race detector's findings (`raceway.races.Race`).

- `raceway.report.text.render(races, ...) -> str`: a terminal report (ThreadSanitizer style).
- `raceway.report.sarif.render(races, tool_version=...) -> dict` / `.write(path, ...)`: SARIF
  2.1.0 for code-scanning systems.
- `raceway.report.html.render(races, batches) -> str`: one self-contained page that draws each
  race on the lanes of the strands involved.
- `Suppressions`: a ThreadSanitizer-like suppressions file (``variable:<glob>``,
  ``location:<glob>``) to silence known races.

Everything in a finding (variable names, values, locations, lock ids) comes from the observed
program and is treated as untrusted by every writer.
"""

from .suppressions import Rule, Suppressions

__all__ = ["Rule", "Suppressions"]
