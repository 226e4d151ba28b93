"""SIGKILL `sift index` at random moments and check that nothing is ever half-written.

The harness lives with the tests (tests/kill_harness.py, which tests/engine/test_crash.py runs);
this is its command line for the figures in bench/README.md:

    python bench/kill_index.py --corpus ../shared/data/ir/cranfield --rounds 50     # real model
    python bench/kill_index.py --synthetic 400 --rounds 50 --fake                   # a minute

Prints a line per round and a summary; exits 1 if any check failed.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.kill_harness import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
