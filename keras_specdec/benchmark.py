"""Deprecated name of the benchmark: use `python -m keras_specdec.bench`
(the same options; `keras_specdec.bench`)."""

import sys

from keras_specdec.bench.cli import main

if __name__ == "__main__":
    print(
        "note: `python -m keras_specdec.benchmark` is now "
        "`python -m keras_specdec.bench` (same options).",
        file=sys.stderr,
    )
    main()
