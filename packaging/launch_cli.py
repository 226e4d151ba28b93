"""Frozen entry point of `sift`: the command line (never imports Qt)."""

import multiprocessing
import sys

if __name__ == "__main__":
    # First: a spawned parse worker re-runs this executable; freeze_support() makes it the worker.
    multiprocessing.freeze_support()
    from engine.cli import main

    sys.exit(main())
