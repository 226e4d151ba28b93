"""Frozen entry point of `sift-desktop`: the window, or `--self-test`."""

import multiprocessing

if __name__ == "__main__":
    # First, before importing Qt or torch: in a frozen app a spawned parse worker re-runs this
    # executable, and freeze_support() turns that run into the worker (and exits when it is done).
    multiprocessing.freeze_support()
    from desktop.app import run

    run()  # exits without the interpreter's final teardown (see desktop.app.run)
