"""Sequence-level exactness of sampled speculative decoding.

For a tiny vocabulary the target's exact joint distribution over all
continuations is computed by enumeration (full forward passes, with the base
sampler's transform re-implemented here in numpy). 100k speculative samples
are drawn through the real `generate_step` (vmapped over independent seeds,
so each sample is exactly one `generate()` call), and their total-variation
distance from the exact distribution is compared with the noise floor: the
TV distances of 200 exact multinomial samples of the same size.
"""

import keras_hub
import numpy as np
import pytest
from helpers import (  # noqa: F401 (re-exported for older imports)
    VOCAB,
    exact_joint,
    ragged_inputs,
    reference_probs,
    sample_many,
    tiny_gpt2,
    tv_and_noise_floor,
)
from tiny_models import noisy_copy

import keras_specdec

NUM_SAMPLES = 100_000


BASE_SAMPLERS = {
    "random_t0.8": lambda: keras_hub.samplers.RandomSampler(temperature=0.8),
    "top_k3_t1.3": lambda: keras_hub.samplers.TopKSampler(k=3, temperature=1.3),
    "top_p0.7_t0.9": lambda: keras_hub.samplers.TopPSampler(p=0.7, temperature=0.9),
}


@pytest.mark.parametrize("ragged", [False, True], ids=["batch1", "ragged"])
@pytest.mark.parametrize("base_name", sorted(BASE_SAMPLERS))
def test_sequence_distribution_is_exact(base_name, ragged):
    # The default verification: block (Sun et al., 2024), whose acceptance
    # rule is checked against the paper's algorithm in
    # tests/block_verification_test.py.
    check_sequence_distribution(base_name, ragged, "block")


# Token-level verification (Leviathan et al.) on the most demanding case of
# the matrix above (ragged rows at different rates, top-k zeros): each case
# costs a 100k-sample program, so not the whole matrix.
@pytest.mark.parametrize("base_name,ragged", [("top_k3_t1.3", True)], ids=["top_k3"])
def test_sequence_distribution_is_exact_with_token_verification(base_name, ragged):
    check_sequence_distribution(base_name, ragged, "token")


def check_sequence_distribution(base_name, ragged, verification):
    target = tiny_gpt2(seed=1)
    draft = noisy_copy(target, noise=1.0, seed=2)  # agrees often, not always
    max_length = 7
    prompts = [[1, 2, 3]] + ([[4, 0, 2, 1]] if ragged else [])
    inputs = ragged_inputs(prompts, max_length)

    base = BASE_SAMPLERS[base_name]()
    sampler = keras_specdec.SpeculativeSampler(
        draft, 3, base_sampler=base, verification=verification
    )
    samples = sample_many(target, sampler, inputs, NUM_SAMPLES, seed=1234)
    for row, prompt in enumerate(prompts):
        # Prompt tokens are never overwritten.
        assert (samples[:, row, : len(prompt)] == prompt).all()
        num_new = max_length - len(prompt)  # 4 (and 3 for the ragged row)
        exact = exact_joint(target, np.array(prompt), num_new, base)
        tv, floor_mean, floor_std, counts = tv_and_noise_floor(
            samples[:, row, len(prompt) :], exact
        )
        # Never a continuation the target cannot produce (top-k / top-p zeros).
        assert counts[exact == 0].sum() == 0
        # An exact sampler's TV at this sample size is floor_mean +- floor_std
        # (0.006 to 0.03, +- 0.001, for these 125- and 625-outcome cases); 4
        # standard deviations above the mean is exceeded by an exact sampler
        # with probability ~1e-4. Faults injected on purpose gave, for top-k:
        # recovered token drawn from p instead of the residual TV 0.29;
        # top-k ignored TV 0.82 (and zero-probability samples); argmax drafts
        # judged with the soft q TV 0.92.
        assert tv < floor_mean + 4 * floor_std, (tv, floor_mean, floor_std)
