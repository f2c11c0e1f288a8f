"""Entry point of `python -m tests.bench`.

Kept to an import under the main guard: pool and server processes started with
spawn/forkserver re-import the main module, and must not re-run the bench.
"""

if __name__ == "__main__":
    import sys

    from tests.bench.runner import main

    sys.exit(main())
