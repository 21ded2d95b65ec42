"""`python -m labeler.cli ...`, the same as the `labeler` command."""
import sys

from . import main

if __name__ == "__main__":  # vLLM starts its engines with spawn
    sys.exit(main())
