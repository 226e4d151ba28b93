"""`python -m desktop`: start Sift's desktop app (or hand the wish to the one running)."""

import sys

from desktop.launch import main

if __name__ == "__main__":
    sys.exit(main())
