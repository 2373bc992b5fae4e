"""A trapping core stays a contained error even when the application installs signal handlers
after the SDK started (``faulthandler.enable()``, pytest's faulthandler, crash reporters): the
core's traps are explicit checks, not signals (``_core.Runtime``). With signal-based traps, the
same program dies with SIGILL. A real process."""

from __future__ import annotations

import subprocess
import sys
import textwrap

PROGRAM = textwrap.dedent(
    """
    import faulthandler
    from raceway._core import CoreInstance, CoreTrap
    from raceway.testing import core_limits

    with core_limits(memory=2 * 1024 * 1024):
        core = CoreInstance()
    faulthandler.enable()  # replaces whatever signal handlers were there
    event = '[0,0,1,0,0,null,"a",1,"Custom",["n","' + "x" * 5000 + '"]]'
    big = '{"contexts":[],"states":[],"events":[' + ",".join([event] * 400) + "]}"
    try:
        core.observe(big, 50)
        print("no trap")
    except CoreTrap as e:
        print("contained:", e)
    """
)


def test_a_trap_after_faulthandler_is_enabled_is_contained(tmp_path):
    done = subprocess.run([sys.executable, "-c", PROGRAM], capture_output=True, text=True, timeout=120,
                          env={"XDG_CACHE_HOME": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("contained: core call observe: wasm trap"), done.stdout
