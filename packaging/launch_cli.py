"""Frozen entry point of `sift`: the command line (never imports Qt)."""

import multiprocessing
import sys

if __name__ == "__main__":
    # First: a spawned parse worker re-runs this executable; freeze_support() makes it the worker.
    multiprocessing.freeze_support()
    if sys.argv[1:2] == ["--openvino-convert"]:  # engine.embed converting a model in a process of its own
        from engine.openvino_convert import main

        sys.exit(main(sys.argv[2:]))
    from engine.cli import main

    sys.exit(main())
