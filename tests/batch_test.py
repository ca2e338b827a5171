"""Batches in which every row advances at its own pace (per-row positions)."""

import keras_hub
import numpy as np
import pytest
from helpers import (
    exact_joint,
    generate,
    ragged_batch,
    ragged_inputs,
    sample_many,
    tiny_gpt2,
    tv_and_noise_floor,
)
from tiny_models import (
    noisy_copy,
    seq2seq_inputs,
    tiny_causal_lm,
    tiny_seq2seq_lm,
)

import keras_specdec

BATCH = 16


def batch16_prompts(seed, empty=True):
    """16 prompts of lengths 0 (or 1) to 8, tokens 1..40."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(0 if empty else 1, 9, BATCH)
    lengths[0] = 0 if empty else 1
    return [list(rng.integers(1, 40, n)) for n in lengths]


def stop_token_for(plain_token_ids, padding_mask):
    """A token that rows are likely to generate somewhere: rows stop at
    different positions. Not the padding id 0: KerasHub's loop also finds a
    stop id in the unwritten padding and stops at once (issue 11)."""
    counts = np.bincount(plain_token_ids[~padding_mask])
    counts[0] = 0
    return int(counts.argmax())


# GPT-2 runs in CI; Gemma and Llama (and T5 below) add ~1 min each on 2 cores.
@pytest.mark.parametrize(
    "family",
    [
        "gpt2",
        pytest.param("gemma", marks=pytest.mark.slow),
        pytest.param("llama", marks=pytest.mark.slow),
    ],
)
def test_batch16_ragged_stop_tokens_greedy_identity(family):
    target = tiny_causal_lm(family, "target", seed=1)
    draft = noisy_copy(target, noise=0.5, seed=2)
    token_ids, padding_mask = ragged_batch(batch16_prompts(0), 24)
    plain = generate(target, "greedy", token_ids, padding_mask, family=family)
    stop = stop_token_for(plain["token_ids"], padding_mask)
    expected = generate(
        target, "greedy", token_ids, padding_mask, family=family, stop_token_ids=(stop,)
    )
    # The stop token cut rows at different positions, not all of them.
    ends = expected["padding_mask"].sum(1)
    assert len(set(ends.tolist())) > 2
    sampler = keras_specdec.SpeculativeSampler(draft, 3)
    out = generate(
        target, sampler, token_ids, padding_mask, family=family, stop_token_ids=(stop,)
    )
    np.testing.assert_array_equal(out["padding_mask"], expected["padding_mask"])
    np.testing.assert_array_equal(out["token_ids"], expected["token_ids"])
    stats = sampler.stats()
    assert 0 < stats["accepted_tokens"] < stats["draft_tokens"]


@pytest.mark.slow
def test_batch16_t5_ragged_stop_tokens_greedy_identity():
    target = tiny_seq2seq_lm("t5", "target", seed=1)
    draft = noisy_copy(target, 0.01, seed=2)
    rng = np.random.default_rng(0)
    encoder = [list(rng.integers(1, 40, n)) for n in rng.integers(1, 8, BATCH)]
    decoder = [[1] + p for p in batch16_prompts(1, empty=False)]
    inputs = seq2seq_inputs(encoder, decoder, encoder_length=8, max_length=20)

    def decode(sampler, **kwargs):
        target.compile(sampler=sampler)
        out = target.generate(inputs, **kwargs)
        return {k: np.asarray(v) for k, v in out.items()}

    plain = decode("greedy", stop_token_ids=None)["decoder_token_ids"]
    stop = stop_token_for(plain, inputs["decoder_padding_mask"])
    expected = decode("greedy", stop_token_ids=(stop,))
    assert not expected["decoder_padding_mask"].all()
    out = decode(keras_specdec.SpeculativeSampler(draft, 3), stop_token_ids=(stop,))
    for key in ("decoder_token_ids", "decoder_padding_mask"):
        np.testing.assert_array_equal(out[key], expected[key])


def test_empty_prompt_row_does_not_touch_its_neighbour():
    """Issue 11: batch [[], [1, 2, 3]], max_length 12, greedy, gamma 3."""
    target = tiny_causal_lm("gpt2", "target", seed=1)
    token_ids, padding_mask = ragged_batch([[], [1, 2, 3]], 12)
    alone = generate(target, "greedy", token_ids[1:], padding_mask[1:])["token_ids"]
    expected = generate(target, "greedy", token_ids, padding_mask)["token_ids"]
    np.testing.assert_array_equal(expected[1], alone[0])
    for draft in (target, noisy_copy(target, 0.5, seed=2)):
        sampler = keras_specdec.SpeculativeSampler(draft, 3)
        out = generate(target, sampler, token_ids, padding_mask)["token_ids"]
        np.testing.assert_array_equal(out[1], alone[0])
        # The empty row itself is KerasHub's greedy output too (its first
        # token comes from KerasHub's own step at index 0).
        np.testing.assert_array_equal(out, expected)
    assert sampler.stats()["emitted_tokens"] == 12 + 9


def test_rows_advance_independently():
    """With one seed, a row's sampled tokens do not depend on its
    neighbour: each row's draws come from its own slot of the round's random
    tensors and its progress from its own acceptances (with one shared index
    a row moved at the pace of the slowest row, so a neighbour changed when
    its draft tokens were judged)."""
    target = tiny_causal_lm("gpt2", "target", seed=1)
    draft = noisy_copy(target, noise=1.0, seed=2)
    base = keras_hub.samplers.RandomSampler(temperature=0.8)
    outputs = []
    for neighbour in ([4, 5, 6, 7, 8, 9], [11]):
        token_ids, padding_mask = ragged_batch([[1, 2, 3], neighbour], 32)
        sampler = keras_specdec.SpeculativeSampler(draft, 4, base_sampler=base, seed=3)
        outputs.append(generate(target, sampler, token_ids, padding_mask))
        assert 0 < sampler.stats()["acceptance_rate"] < 1
    np.testing.assert_array_equal(
        outputs[0]["token_ids"][0], outputs[1]["token_ids"][0]
    )


def test_sequence_distribution_rows_at_different_rates():
    """Sequence-level exactness when rows progress at different rates: row 0
    (prompt [1, 2]) has 5 new tokens and row 1 (prompt [4, 0, 2, 1]) 3, and
    the draft (noise 1.0) is accepted at different rates on the two; with
    gamma 2 the rows are at different positions after the first round."""
    target = tiny_gpt2(seed=1)
    draft = noisy_copy(target, noise=1.0, seed=2)
    base = keras_hub.samplers.TopKSampler(k=3, temperature=1.3)
    prompts = [[1, 2], [4, 0, 2, 1]]
    max_length = 7
    inputs = ragged_inputs(prompts, max_length)
    sampler = keras_specdec.SpeculativeSampler(draft, 2, base_sampler=base)
    samples = sample_many(target, sampler, inputs, 100_000, seed=21)
    for row, prompt in enumerate(prompts):
        assert (samples[:, row, : len(prompt)] == prompt).all()
        exact = exact_joint(target, np.array(prompt), max_length - len(prompt), base)
        tv, floor_mean, floor_std, counts = tv_and_noise_floor(
            samples[:, row, len(prompt) :], exact
        )
        assert counts[exact == 0].sum() == 0
        # Same threshold and reasoning as tests/distribution_test.py: an
        # exact sampler exceeds mean + 4 std of its TV with probability ~1e-4.
        assert tv < floor_mean + 4 * floor_std, (row, tv, floor_mean, floor_std)
