"""Frozen entry point of `sift-desktop`: the window, or `--self-test`."""

import multiprocessing
import sys

if __name__ == "__main__":
    # First, before importing Qt or torch: in a frozen app a spawned parse worker re-runs this
    # executable, and freeze_support() turns that run into the worker (and exits when it is done).
    multiprocessing.freeze_support()
    if sys.argv[1:2] == ["--openvino-convert"]:  # engine.embed converting a model in a process of its own
        from engine.openvino_convert import main

        sys.exit(main(sys.argv[2:]))
    from desktop.app import run

    run()  # exits without the interpreter's final teardown (see desktop.app.run)
