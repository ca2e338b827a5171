"""`SpeculativeSampler` with encoder-decoder targets: T5, BART, T5Gemma."""

import keras
import keras_hub
import numpy as np
import pytest
from helpers import reference_probs, sample_many, tv_and_noise_floor
from tiny_models import noisy_copy, seq2seq_inputs, tiny_causal_lm, tiny_seq2seq_lm

import keras_specdec

ENCODER = [[5, 6, 7, 8, 9, 10], [11, 12, 13]]  # ragged encoder inputs
DECODER_RAGGED = [[1], [1, 3, 4]]


def target_and_drafts(family):
    # Randomly initialised tiny T5s greedily repeat one token (BART and
    # T5Gemma do not); the sampled-distribution test below exercises T5 fully.
    target = tiny_seq2seq_lm(family, "target", seed=1)
    noise = 0.01 if family == "t5" else 0.5
    return target, [
        noisy_copy(target, noise, seed=2),
        tiny_seq2seq_lm(family, "draft", seed=3),
    ]


def decode(model, sampler, inputs, **kwargs):
    model.compile(sampler=sampler)
    kwargs.setdefault("stop_token_ids", None)
    return np.asarray(model.generate(inputs, **kwargs)["decoder_token_ids"])


# (batch, gamma, draft index) cases: draft 0 is a noisy copy of the target,
# draft 1 a small random draft. The full matrix (both batches x gammas 1/4/7 x
# both drafts, 12 speculative compiles per family) runs with -m slow; CI runs a
# cover of every value on each axis in 3.
GREEDY_CASES_CI = [("single", 1, 0), ("ragged", 4, 1), ("ragged", 7, 0)]
GREEDY_CASES_ALL = [
    (batch, gamma, draft)
    for batch in ("single", "ragged")
    for gamma in (1, 4, 7)
    for draft in (0, 1)
]
BATCHES = {"single": (ENCODER[:1], [[1]]), "ragged": (ENCODER, DECODER_RAGGED)}


def check_greedy_identity(family, cases):
    target, drafts = target_and_drafts(family)
    expected = {}
    accepted = 0
    for batch, gamma, draft in cases:
        inputs = seq2seq_inputs(*BATCHES[batch], encoder_length=8, max_length=16)
        if batch not in expected:
            expected[batch] = decode(target, "greedy", inputs)
        sampler = keras_specdec.SpeculativeSampler(drafts[draft], gamma)
        np.testing.assert_array_equal(
            decode(target, sampler, inputs),
            expected[batch],
            err_msg=str((batch, gamma, draft)),
        )
        accepted += sampler.stats()["accepted_tokens"]
    assert accepted > 0


@pytest.mark.parametrize("family", ["t5", "bart", "t5gemma"])
def test_greedy_identical_to_target_greedy(family):
    check_greedy_identity(family, GREEDY_CASES_CI)


@pytest.mark.slow
@pytest.mark.parametrize("family", ["t5", "bart", "t5gemma"])
def test_greedy_identical_to_target_greedy_all_cases(family):
    check_greedy_identity(family, GREEDY_CASES_ALL)


@pytest.mark.parametrize("family", ["t5", "bart"])
def test_auto_gamma_greedy_identity(family):
    # "auto": the draft's steps run in a loop to each round's gamma (an
    # encoder-decoder draft state in that loop), then a verify pass of the
    # covering size.
    target, drafts = target_and_drafts(family)
    inputs = seq2seq_inputs(*BATCHES["ragged"], encoder_length=8, max_length=16)
    expected = decode(target, "greedy", inputs)
    sampler = keras_specdec.SpeculativeSampler(
        drafts[0], "auto", gamma_schedule="heuristic", max_speculative_tokens=6
    )
    np.testing.assert_array_equal(decode(target, sampler, inputs), expected)
    assert sampler.stats()["accepted_tokens"] > 0


def test_two_batches_of_one_shape_use_their_own_encoder_inputs():
    target, (draft, _) = target_and_drafts("t5gemma")
    first = seq2seq_inputs(ENCODER, DECODER_RAGGED, 8, 16)
    second = seq2seq_inputs(
        [[20, 21], [22, 23, 24, 25, 26, 27, 28]], DECODER_RAGGED, 8, 16
    )
    expected = [decode(target, "greedy", x) for x in (first, second)]
    assert not np.array_equal(*expected)
    sampler = keras_specdec.SpeculativeSampler(draft, 4)
    target.compile(sampler=sampler)
    for x, want in zip((first, second, first), expected + expected[:1]):
        got = np.asarray(target.generate(x, stop_token_ids=None)["decoder_token_ids"])
        np.testing.assert_array_equal(got, want)
    assert sampler.trace_count == 1  # all three hit the jit cache


def test_local_presets_load_as_target_and_draft(tmp_path):
    target, (draft, _) = target_and_drafts("t5")
    inputs = seq2seq_inputs(ENCODER, DECODER_RAGGED, 8, 16)
    expected = decode(target, "greedy", inputs)
    target.save_to_preset(str(tmp_path / "target"))
    draft.save_to_preset(str(tmp_path / "draft"))
    loaded = keras_hub.models.T5Seq2SeqLM.from_preset(str(tmp_path / "target"))
    sampler = keras_specdec.SpeculativeSampler(str(tmp_path / "draft"), 4)
    assert sampler.get_config()["draft"] == str(tmp_path / "draft")
    np.testing.assert_array_equal(decode(loaded, sampler, inputs), expected)
    assert sampler.stats()["acceptance_rate"] > 0


def test_kind_and_vocabulary_mismatch_errors():
    target, _ = target_and_drafts("t5")
    inputs = seq2seq_inputs(ENCODER, DECODER_RAGGED, 8, 16)
    causal = tiny_causal_lm("gpt2", "draft", seed=3)
    with pytest.raises(ValueError, match="encoder-decoder"):
        decode(target, keras_specdec.SpeculativeSampler(causal, 2), inputs)
    keras.utils.set_random_seed(0)
    other = keras_hub.models.T5Seq2SeqLM(
        backbone=keras_hub.models.T5Backbone(
            vocabulary_size=40,
            num_layers=1,
            num_heads=2,
            hidden_dim=16,
            intermediate_dim=32,
        ),
        preprocessor=None,
    )
    with pytest.raises(ValueError, match="vocabulary"):
        decode(target, keras_specdec.SpeculativeSampler(other, 2), inputs)


@pytest.mark.parametrize(
    "base",
    [
        lambda: keras_hub.samplers.RandomSampler(temperature=0.8),
        lambda: keras_hub.samplers.TopPSampler(p=0.7, temperature=0.9),
    ],
    ids=["random", "top_p"],
)
def test_t5_sequence_distribution_is_exact(base):
    import itertools

    vocab = 5
    keras.utils.set_random_seed(1)
    target = keras_hub.models.T5Seq2SeqLM(
        backbone=keras_hub.models.T5Backbone(
            vocabulary_size=vocab,
            num_layers=2,
            num_heads=2,
            hidden_dim=16,
            intermediate_dim=32,
            dropout=0.0,
        ),
        preprocessor=None,
    )
    embedding = target.backbone.token_embedding.embeddings
    embedding.assign(embedding * 3.0)  # sharper, less uniform distributions
    draft = noisy_copy(target, 1.0, seed=2)
    encoder, decoder, max_length = [[1, 2, 3, 4]], [[0]], 4  # 3 new tokens
    inputs = seq2seq_inputs(encoder, decoder, 4, max_length)
    base = base()
    sampler = keras_specdec.SpeculativeSampler(draft, 2, base_sampler=base)
    samples = sample_many(target, sampler, inputs, 100_000, seed=99)
    assert (samples[:, 0, 0] == 0).all()

    # Exact joint over the 125 continuations from full forward passes.
    continuations = np.array(list(itertools.product(range(vocab), repeat=3)))
    n = len(continuations)
    decoder_ids = np.concatenate([np.zeros((n, 1), "int32"), continuations], 1)
    logits = np.asarray(
        target(
            {
                "encoder_token_ids": np.repeat(inputs["encoder_token_ids"], n, 0),
                "encoder_padding_mask": np.repeat(inputs["encoder_padding_mask"], n, 0),
                "decoder_token_ids": decoder_ids,
                "decoder_padding_mask": np.ones_like(decoder_ids, bool),
            }
        )
    )
    exact = np.ones(n)
    for t in range(3):
        probs = reference_probs(logits[:, t], base)
        exact *= probs[np.arange(n), continuations[:, t]]
    tv, floor_mean, floor_std, counts = tv_and_noise_floor(samples[:, 0, 1:], exact)
    assert counts[exact == 0].sum() == 0
    # Same threshold and reasoning as tests/distribution_test.py.
    assert tv < floor_mean + 4 * floor_std, (tv, floor_mean, floor_std)


def test_stop_tokens_match_greedy_sampler():
    target, (draft, _) = target_and_drafts("bart")
    inputs = seq2seq_inputs(ENCODER, DECODER_RAGGED, 8, 16)
    plain = decode(target, "greedy", inputs)
    generated = plain[~inputs["decoder_padding_mask"]]
    stop = int(np.bincount(generated).argmax())
    target.compile(sampler="greedy")
    expected = target.generate(inputs, stop_token_ids=(stop,))
    sampler = keras_specdec.SpeculativeSampler(draft, 4)
    target.compile(sampler=sampler)
    out = target.generate(inputs, stop_token_ids=(stop,))
    assert not np.asarray(expected["decoder_padding_mask"]).all()
    for key in ("decoder_token_ids", "decoder_padding_mask"):
        np.testing.assert_array_equal(np.asarray(out[key]), np.asarray(expected[key]))
