"""`python examples/demo.py [--html OUT]`: the bundled demo, the same as `python -m raceway demo`
(and `make demo`). Its code is in host-python/raceway/demo/bank.py: a banking service with a
lost-update race, found by the in-process detector, then the same service fixed with one lock."""

import sys

from raceway.cli import main

if __name__ == "__main__":
    sys.exit(main(["demo", *sys.argv[1:]]))
