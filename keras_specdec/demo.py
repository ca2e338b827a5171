"""`python -m keras_specdec.demo`: the quickstart (`keras_specdec.bench.demo`).

python -m keras_specdec.demo            # greedy, gamma 4
python -m keras_specdec.demo --sampler random --temperature 1.0
"""

from keras_specdec.bench.demo import main

if __name__ == "__main__":
    main()
