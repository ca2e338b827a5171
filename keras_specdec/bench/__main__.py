"""`python -m keras_specdec.bench`: the benchmark (see `keras_specdec.bench`)."""

from keras_specdec.bench.cli import main

if __name__ == "__main__":
    main()
