"""The rejection-sampling math on hand-made distributions."""

import keras
import keras_hub
import numpy as np
import pytest

import keras_specdec
from keras_specdec import rejection

LOGITS = np.log(
    np.array([[0.05, 0.1, 0.15, 0.3, 0.4], [0.4, 0.3, 0.15, 0.1, 0.05]], "float32")
)


@pytest.mark.parametrize(
    "base",
    [
        keras_hub.samplers.RandomSampler(temperature=0.7, seed=1),
        keras_hub.samplers.TopKSampler(k=2, temperature=1.5, seed=1),
        keras_hub.samplers.TopPSampler(p=0.5, seed=1),
        keras_hub.samplers.TopPSampler(p=0.9, k=3, temperature=0.8, seed=1),
    ],
    ids=["random", "top_k", "top_p", "top_p_with_k"],
)
def test_adjusted_probabilities_match_keras_hub_samplers(base):
    probs = np.asarray(rejection.adjusted_probabilities(LOGITS, base))
    np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-6)
    # Draw 40k tokens per row with KerasHub's own sampler.
    n = 40_000
    logits = np.repeat(LOGITS, n, axis=0)
    tokens = np.asarray(base.get_next_token(base.compute_probabilities(logits)))
    for row in range(2):
        freq = np.bincount(tokens[row * n : (row + 1) * n], minlength=5) / n
        # Tokens KerasHub never draws have exactly zero adjusted probability.
        assert (probs[row][freq == 0] == 0).all()
        # Binomial sd of a frequency is <= 0.5 / sqrt(n) = 0.0025: 0.01 is 4 sd.
        np.testing.assert_allclose(freq, probs[row], atol=0.01)


def test_greedy_is_one_hot_argmax():
    probs = rejection.adjusted_probabilities(LOGITS, keras_hub.samplers.GreedySampler())
    np.testing.assert_array_equal(np.asarray(probs), np.eye(5)[[4, 0]])


def test_residual_has_no_nan_and_no_mass_on_impossible_tokens():
    p = np.array([[0.5, 0.5, 0.0, 0.0]], "float32")
    for q in ([0.5, 0.5, 0.0, 0.0], [0.0, 0.0, 0.5, 0.5], [0.2, 0.3, 0.5, 0.0]):
        residual = np.asarray(
            rejection.residual_distribution(p, np.array([q], "float32"))
        )
        assert np.isfinite(residual).all()
        np.testing.assert_allclose(residual.sum(), 1.0, rtol=1e-6)
        assert (residual[p == 0] == 0).all()


def test_rejection_sample_first_token_marginal_is_p():
    # One position: output token 0 is the accepted draft token or the
    # recovered token, and its marginal must be exactly p (Theorem 1).
    n = 100_000
    p = np.array([0.1, 0.6, 0.3, 0.0], "float32")
    q = np.array([0.4, 0.1, 0.1, 0.4], "float32")
    seed = keras.random.SeedGenerator(3)
    draft_tokens = rejection.sample_categorical(np.tile(q, (n, 1)), seed)[:, None]
    target_probs = np.tile(np.stack([p, p]), (n, 1, 1))
    out, num_accepted = rejection.rejection_sample(
        draft_tokens,
        np.tile(q, (n, 1, 1)),
        target_probs,
        np.zeros((n, 2), bool),
        np.zeros((n, 2), "int32"),
        seed,
    )
    first = np.asarray(out)[:, 0]
    freq = np.bincount(first, minlength=4) / n
    assert freq[3] == 0  # q proposes token 3 often; p(3) = 0 never survives
    # sd of each frequency <= 0.0016 at n = 100k; 0.008 is 5 sd.
    np.testing.assert_allclose(freq, p, atol=0.008)
    # Acceptance probability is sum(min(p, q)) = 0.1 + 0.1 + 0.1 = 0.3.
    assert abs(np.asarray(num_accepted).mean() - 0.3) < 0.008


def test_forced_positions_are_accepted_and_kept():
    n = 4
    draft_tokens = np.array([[2, 1]] * n, "int32")
    forced = np.array([[True, False, True]] * n)
    forced_tokens = np.array([[2, 0, 3]] * n, "int32")
    p = np.tile(np.eye(4, dtype="float32")[[0, 1, 0]], (n, 1, 1))
    q = np.tile(np.eye(4, dtype="float32")[[1, 1]], (n, 1, 1))
    out, num_accepted = rejection.rejection_sample(
        draft_tokens, q, p, forced, forced_tokens, keras.random.SeedGenerator(0)
    )
    # Position 0 forced (accepted untested), position 1 accepted (p = q), and
    # the bonus position is forced to token 3.
    np.testing.assert_array_equal(np.asarray(num_accepted), [2] * n)
    np.testing.assert_array_equal(np.asarray(out), [[2, 1, 3]] * n)


def test_greedy_verify_accepts_matching_prefix():
    target_logits = np.log(np.eye(5, dtype="float32")[[[1, 2, 3], [1, 4, 3]]] + 1e-3)
    out, num_accepted = rejection.greedy_verify(
        np.array([[1, 2], [1, 2]]),
        target_logits,
        np.zeros((2, 3), bool),
        np.zeros((2, 3), "int32"),
    )
    np.testing.assert_array_equal(np.asarray(num_accepted), [2, 1])
    np.testing.assert_array_equal(np.asarray(out), [[1, 2, 3], [1, 4, 3]])


@pytest.mark.parametrize(
    "sampler, argument",
    [
        (keras_hub.samplers.TopKSampler(k=0), "k"),
        (keras_hub.samplers.TopKSampler(k=2.5), "k"),
        (keras_hub.samplers.TopPSampler(p=0.0), "p"),
        (keras_hub.samplers.TopPSampler(p=1.5), "p"),
        (keras_hub.samplers.TopPSampler(p=float("nan")), "p"),
        (keras_hub.samplers.TopPSampler(p=0.9, k=0), "k"),
        (keras_hub.samplers.RandomSampler(temperature=0.0), "temperature"),
        (keras_hub.samplers.RandomSampler(temperature=-1.0), "temperature"),
        (keras_hub.samplers.TopKSampler(k=3, temperature=float("nan")), "temperature"),
        (
            keras_hub.samplers.TopPSampler(p=0.9, temperature=float("inf")),
            "temperature",
        ),
        (keras_hub.samplers.GreedySampler(temperature=-1.0), "temperature"),
    ],
)
def test_base_sampler_settings_without_a_distribution_are_refused(sampler, argument):
    # KerasHub builds these without a word; TopKSampler(k=0) then gave
    # all-zero output under speculative decoding. Refused at construction,
    # before any compile, naming the setting.
    draft = keras_specdec.drafts.UnigramDraft(np.ones(8))
    with pytest.raises(ValueError, match=f"`{argument}`|{argument}="):
        keras_specdec.SpeculativeSampler(draft, base_sampler=sampler)
    with pytest.raises(ValueError, match=f"`{argument}`|{argument}="):
        rejection.get_base_sampler(sampler)


def test_valid_base_sampler_settings_are_kept():
    for sampler in (
        keras_hub.samplers.TopKSampler(k=np.int64(1)),
        keras_hub.samplers.TopPSampler(p=1, k=4, temperature=0.5),
        keras_hub.samplers.RandomSampler(temperature=np.float32(2.0)),
        "greedy",
        {"class_name": "top_k", "config": {"k": 3}},
    ):
        assert isinstance(
            rejection.get_base_sampler(sampler), rejection.SUPPORTED_BASE_SAMPLERS
        )


def test_one_temperature_to_sampler_function():
    # distill, the examples and the benchmark each had their own, returning
    # different types ("greedy" or a GreedySampler).
    from keras_specdec import distill

    assert distill.base_sampler_for is rejection.base_sampler_for
    assert isinstance(rejection.base_sampler_for(0), keras_hub.samplers.GreedySampler)
    sampler = rejection.base_sampler_for(0.7, seed=3)
    assert type(sampler) is keras_hub.samplers.RandomSampler
    assert (sampler.temperature, sampler.seed) == (0.7, 3)
    top_p = rejection.base_sampler_for(0.7, top_p=0.9)
    assert type(top_p) is keras_hub.samplers.TopPSampler and top_p.p == 0.9
    for bad in (-0.1, float("nan"), None, "1"):
        with pytest.raises(ValueError, match="`temperature`"):
            rejection.base_sampler_for(bad)
