"""`python -m desktop`: start Sift's desktop app."""

from desktop.app import run

if __name__ == "__main__":
    run()
