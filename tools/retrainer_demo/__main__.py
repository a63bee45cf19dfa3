"""`python -m retrainer_demo [--epochs 2] [--timeout 420]`: `make demo` (see demo.py)."""

from retrainer_demo.demo import main

if __name__ == "__main__":
    raise SystemExit(main())
