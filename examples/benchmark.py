"""Table-2 style benchmark of the shipped pair: `python -m keras_specdec.bench`
(see keras_specdec/bench/; the same options).

python examples/benchmark.py --gammas 1 2 3 4 5 6 --temperatures 0 1
"""

import os

os.environ.setdefault("KERAS_BACKEND", "jax")

from keras_specdec.bench.cli import main  # noqa: E402

if __name__ == "__main__":
    main()
