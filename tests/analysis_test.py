"""The theory functions against values computed independently here."""

import math

import numpy as np
import pytest
from tiny_models import noisy_copy, seq2seq_inputs, tiny_causal_lm, tiny_seq2seq_lm

from keras_specdec import analysis, measure


def test_expected_tokens_per_step_is_a_truncated_geometric_sum():
    for alpha in (0.0, 0.3, 0.8, 0.99):
        for gamma in (1, 4, 9):
            # E[tokens] = sum_{k=0}^{gamma} alpha^k.
            direct = sum(alpha**k for k in range(gamma + 1))
            assert analysis.expected_tokens_per_step(alpha, gamma) == pytest.approx(
                direct
            )
    assert analysis.expected_tokens_per_step(0.8, 4) == pytest.approx(3.3616)
    # The alpha -> 1 limit is gamma + 1, continuously.
    assert analysis.expected_tokens_per_step(1 - 1e-9, 4) == pytest.approx(5.0)


def test_speedup_and_optimal_gamma_by_brute_force():
    for alpha, c in ((0.6, 0.1), (0.8, 0.05), (0.9, 0.02), (0.5, 0.3)):
        values = {
            g: (1 - alpha ** (g + 1)) / ((1 - alpha) * (g * c + 1))
            for g in range(1, 33)
        }
        best = max(values, key=values.get)
        assert analysis.optimal_num_speculative_tokens(alpha, c) == best
        assert analysis.expected_speedup(alpha, best, c) == pytest.approx(values[best])
        bound = analysis.speedup_lower_bound(alpha, c)
        if alpha > c:
            # Corollary 3.9: the best gamma is at least as good as the bound.
            assert values[best] >= bound - 1e-12


def test_ops_increase_matches_theorem_3_11():
    alpha, gamma, c_hat = 0.7, 3, 0.02
    expected = (1 - alpha) * (gamma * c_hat + gamma + 1) / (1 - alpha ** (gamma + 1))
    assert analysis.expected_ops_increase(alpha, gamma, c_hat) == pytest.approx(
        expected
    )


def test_acceptance_rate_is_one_minus_total_variation():
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(7), size=20)
    q = rng.dirichlet(np.ones(7), size=20)
    tv = 0.5 * np.abs(p - q).sum(-1)
    np.testing.assert_allclose(
        analysis.acceptance_rate(p, q, per_position=True), 1 - tv
    )


def test_estimate_alpha_and_cost_coefficient_on_models():
    target = tiny_causal_lm("gpt2", "target", seed=1)
    ids = np.random.default_rng(0).integers(1, 48, size=(2, 16)).astype("int32")
    mask = np.ones_like(ids, bool)
    mask[1, 10:] = False
    inputs = {"token_ids": ids, "padding_mask": mask}
    assert analysis.estimate_alpha(
        target, target, inputs, base_sampler="random"
    ) == pytest.approx(1.0)
    other = noisy_copy(target, 1.0, seed=2)
    alpha = analysis.estimate_alpha(target, other, inputs, base_sampler="random")
    assert 0.0 < alpha < 1.0
    c = analysis.measure_cost_coefficient(target, other, max_length=32, repetitions=5)
    assert math.isfinite(c) and c > 0


def test_median_seconds_times_each_call_in_turn_after_warmup():
    calls = []

    def make(name):
        return lambda: calls.append(name)

    medians = analysis.median_seconds({"a": make("a"), "b": make("b")}, 3, warmup=2)
    assert set(medians) == {"a", "b"}
    assert all(0 <= m < 1 for m in medians.values())
    # Warm-up first (untimed), then each repetition times both, starting at a
    # different one each time.
    assert calls == ["a", "a", "b", "b", "a", "b", "b", "a", "a", "b"]
    single = analysis.median_seconds(lambda: None, 1, warmup=0, divide_by=4)
    assert isinstance(single, float)
    with pytest.raises(ValueError, match="at least one timed call"):
        analysis.median_seconds(lambda: None, 0)


def test_median_seconds_is_the_median(monkeypatch):
    clock = iter([0.0, 1.0, 10.0, 13.0, 20.0, 22.0])  # calls of 1, 3 and 2 s
    monkeypatch.setattr(measure.time, "perf_counter", lambda: next(clock))
    assert analysis.median_seconds(lambda: None, 3, warmup=0) == 2.0


def tiny_gpt2_with_preprocessor(seed):
    import keras_hub

    model = tiny_causal_lm("gpt2", "target", seed=seed)
    vocab_size = model.backbone.vocabulary_size
    # Byte-level BPE with one merge ("ca"): otherwise one token per character.
    pieces = ["<|endoftext|>", "\u0120", "ca"] + list("abcdefghijklmnopqrstuvwxyz.")
    pieces += [f"x{i}" for i in range(vocab_size - len(pieces))]
    tokenizer = keras_hub.models.GPT2Tokenizer(
        vocabulary={piece: i for i, piece in enumerate(pieces)}, merges=["c a"]
    )
    model.preprocessor = keras_hub.models.GPT2CausalLMPreprocessor(
        tokenizer, sequence_length=24
    )
    return model


def test_estimate_alpha_on_strings_matches_token_ids():
    target = tiny_gpt2_with_preprocessor(seed=1)
    draft = noisy_copy(target, 1.0, seed=2)
    draft.preprocessor = None  # the target's tokenizer is used for both
    texts = ["the cat sat on the mat.", "a dog."]
    alpha = analysis.estimate_alpha(target, draft, texts, base_sampler="random")
    assert 0.0 < alpha < 1.0
    # Same tokens by hand: start token, characters, end token, padding.
    x, _, _ = target.preprocessor(texts)
    ids = np.asarray(x["token_ids"])
    assert ids[1, 0] == 0 and ids[1, 7] == 0  # "<|endoftext|>" a dog. "<|e..|>"
    # Characters ("ca" is one token), with start and end tokens.
    lengths = [len(t.replace("ca", "c")) + 2 for t in texts]
    mask = np.arange(24)[None, :] < np.array(lengths)[:, None]
    by_hand = analysis.estimate_alpha(
        target,
        draft,
        {"token_ids": ids * mask, "padding_mask": mask},
        base_sampler="random",
    )
    assert alpha == pytest.approx(by_hand, abs=1e-6)
    one = analysis.estimate_alpha(target, draft, texts[0], base_sampler="random")
    assert 0.0 < one < 1.0


def test_estimate_alpha_says_what_it_takes():
    target = tiny_causal_lm("gpt2", "target", seed=1)
    with pytest.raises(ValueError, match="no preprocessor to tokenize it"):
        analysis.estimate_alpha(target, target, ["some text"])
    with pytest.raises(ValueError, match=r"keys \['ids'\].*token_ids"):
        analysis.estimate_alpha(target, target, {"ids": np.ones((1, 4), "int32")})
    with pytest.raises(ValueError, match="got ndarray"):
        analysis.estimate_alpha(target, target, np.ones((1, 4), "int32"))
    with pytest.raises(ValueError, match="no position with a real next token"):
        analysis.estimate_alpha(
            target,
            target,
            {"token_ids": np.ones((1, 4), "int32"), "padding_mask": [[1, 0, 0, 0]]},
        )


def test_estimate_alpha_seq2seq_on_text_and_token_ids():
    import keras
    import keras_hub
    from fake_pairs import SENTENCES_DE, SENTENCES_EN, sentencepiece_proto

    tokenizer = keras_hub.models.T5Tokenizer(
        proto=sentencepiece_proto(SENTENCES_EN + SENTENCES_DE)
    )
    keras.utils.set_random_seed(1)
    backbone = keras_hub.models.T5Backbone(
        vocabulary_size=tokenizer.vocabulary_size(),
        num_layers=1,
        num_heads=2,
        hidden_dim=16,
        intermediate_dim=32,
    )
    preprocessor = keras_hub.models.T5Seq2SeqLMPreprocessor(
        tokenizer=tokenizer, encoder_sequence_length=16, decoder_sequence_length=16
    )
    target = keras_hub.models.T5Seq2SeqLM(backbone=backbone, preprocessor=preprocessor)
    draft = noisy_copy(target, 1.0, seed=2)
    text = {"encoder_text": SENTENCES_EN[:2], "decoder_text": SENTENCES_DE[:2]}
    alpha = analysis.estimate_alpha(target, draft, text, base_sampler="random")
    assert 0.0 < alpha < 1.0
    x, _, next_mask = preprocessor(text)
    x = {k: np.asarray(v) for k, v in x.items()}
    # Token ids: the decoder's last real token (its end token) has no next
    # token in x, so by hand one position per row fewer is counted.
    by_hand = analysis.estimate_alpha(target, draft, x, base_sampler="random")
    assert 0.0 < by_hand < 1.0
    assert np.asarray(next_mask).sum() == x["decoder_padding_mask"].sum()
    with pytest.raises(ValueError, match="needs the decoder side"):
        analysis.estimate_alpha(target, draft, SENTENCES_EN[:2])
    with pytest.raises(ValueError, match="same kind"):
        analysis.estimate_alpha(target, tiny_causal_lm("gpt2", "target"), text)


def test_estimate_alpha_does_not_depend_on_batch_size():
    import keras_hub

    target = tiny_causal_lm("gpt2", "target", seed=0)
    draft = tiny_causal_lm("gpt2", "draft", seed=1)
    rng = np.random.default_rng(3)
    ids = rng.integers(1, 48, size=(5, 16)).astype("int32")
    mask = np.ones_like(ids, bool)
    mask[2, 10:] = False  # a shorter row
    mask[3, 1:] = False  # one real token: no position counted in this row
    inputs = {"token_ids": ids, "padding_mask": mask}
    sampler = keras_hub.samplers.RandomSampler(temperature=0.5)
    for base_sampler in ("greedy", sampler):
        whole = analysis.estimate_alpha(
            target, draft, inputs, base_sampler=base_sampler, batch_size=None
        )
        assert 0.0 < whole < 1.0
        for batch_size in (1, 2, 16):
            alpha = analysis.estimate_alpha(
                target, draft, inputs, base_sampler=base_sampler, batch_size=batch_size
            )
            assert alpha == pytest.approx(whole, abs=1e-6), batch_size
    # Encoder-decoders too (positions counted on the decoder mask).
    t5_target = tiny_seq2seq_lm("t5", "target", seed=0)
    t5_draft = tiny_seq2seq_lm("t5", "draft", seed=1)
    x = seq2seq_inputs(
        rng.integers(2, 48, (3, 8)).tolist(),
        [[0] + row for row in rng.integers(2, 48, (3, 7)).tolist()],
        8,
        10,
    )
    alphas = [
        analysis.estimate_alpha(t5_target, t5_draft, x, batch_size=b) for b in (1, None)
    ]
    assert alphas[0] == pytest.approx(alphas[1], abs=1e-6)
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        analysis.estimate_alpha(target, draft, inputs, batch_size=0)
    with pytest.raises(ValueError, match="different batch sizes"):
        analysis.estimate_alpha(
            target, draft, {"token_ids": ids, "padding_mask": mask[:3]}
        )


@pytest.mark.parametrize(
    "call, argument",
    [
        (lambda: analysis.expected_speedup(1.5, 4, 0.05), "alpha"),
        (lambda: analysis.expected_speedup(-0.1, 4, 0.05), "alpha"),
        (lambda: analysis.expected_speedup(0.8, 4, -0.05), "c"),
        (lambda: analysis.expected_speedup(0.8, 2.5, 0.05), "gamma"),
        (lambda: analysis.expected_speedup(0.8, -1, 0.05), "gamma"),
        (lambda: analysis.expected_speedup(True, 4, 0.05), "alpha"),
        (lambda: analysis.optimal_num_speculative_tokens(math.nan, 0.05), "alpha"),
        (lambda: analysis.optimal_num_speculative_tokens(0.8, math.inf), "c"),
        (
            lambda: analysis.optimal_num_speculative_tokens(0.8, 0.05, max_gamma=0),
            "max_gamma",
        ),
        (lambda: analysis.expected_tokens_per_step(np.float32("nan"), 4), "alpha"),
        (lambda: analysis.expected_ops_increase(0.8, 4, -1.0), "c_hat"),
        (lambda: analysis.speedup_lower_bound(2.0, 0.1), "alpha"),
        (lambda: analysis.speedup_lower_bound(0.5, math.nan), "c"),
        (
            lambda: analysis.expected_speedup_with_verify_cost(0.8, 4, 0.05, 0.0),
            "verify_cost",
        ),
        (
            lambda: analysis.expected_speedup_with_verify_cost(0.8, 4, 0.05, math.inf),
            "verify_cost",
        ),
    ],
)
def test_theory_refuses_numbers_outside_its_domain(call, argument):
    # These returned numbers (alpha = 1.5 gave a speedup, nan an optimal gamma).
    with pytest.raises(ValueError, match=f"`{argument}` must be"):
        call()


def test_theory_on_tensors_stays_unchecked_inside_a_compiled_loop():
    # `rounds.TheoremSchedule` calls it on traced values: no Python checks.
    import jax
    import jax.numpy as jnp

    speedup = jax.jit(analysis.expected_speedup_with_verify_cost)(
        jnp.float32(0.8), jnp.array([1.0, 4.0]), 0.05, jnp.array([1.0, 2.0])
    )
    np.testing.assert_allclose(
        speedup,
        [
            analysis.expected_speedup_with_verify_cost(0.8, 1, 0.05, 1.0),
            analysis.expected_speedup_with_verify_cost(0.8, 4, 0.05, 2.0),
        ],
        rtol=1e-6,
    )
    # Arrays of alphas are not checked either (vectorised use).
    assert np.all(np.isfinite(analysis.expected_speedup(np.array([0.2, 0.9]), 3, 0.1)))
    # The edges of the domain are fine.
    assert analysis.expected_tokens_per_step(1, 4) == 5.0
    assert analysis.expected_tokens_per_step(np.float64(0.0), np.int64(0)) == 1.0
