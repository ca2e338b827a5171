"""`num_speculative_tokens="auto"`: gamma chosen per round inside the loop."""

import keras_hub
import numpy as np
import pytest
from helpers import (
    exact_joint,
    ragged_inputs,
    sample_many,
    tiny_gpt2,
    tv_and_noise_floor,
)
from tiny_models import noisy_copy, tiny_causal_lm

import keras_specdec


def ragged(max_length=24):
    return ragged_inputs([[1, 2, 3], [4, 5, 6, 7, 8, 9]], max_length)


def run(target, sampler, inputs):
    target.compile(sampler=sampler)
    return np.asarray(target.generate(inputs, stop_token_ids=None)["token_ids"])


@pytest.mark.parametrize(
    "schedule",
    [
        {"gamma_schedule": "theorem", "cost_coefficient": 0.1},
        {"gamma_schedule": "heuristic"},
    ],
    ids=["theorem", "heuristic"],
)
def test_auto_gamma_greedy_identity(schedule):
    target = tiny_causal_lm("gpt2", "target", seed=1)
    inputs = ragged()
    expected = run(target, "greedy", inputs)
    for draft in (noisy_copy(target, 0.5, seed=2), tiny_causal_lm("gpt2", "draft", 3)):
        sampler = keras_specdec.SpeculativeSampler(
            draft, "auto", max_speculative_tokens=6, **schedule
        )
        np.testing.assert_array_equal(run(target, sampler, inputs), expected)


def test_theorem_schedule_follows_alpha():
    target = tiny_causal_lm("gpt2", "target", seed=1)
    inputs = ragged(40)
    # Identical draft: alpha -> 1, so with c = 0.01 the theorem wants the
    # largest gamma: nearly every round proposes max_speculative_tokens.
    same = keras_specdec.SpeculativeSampler(
        noisy_copy(target, 0.0), "auto", max_speculative_tokens=6, cost_coefficient=0.01
    )
    run(target, same, inputs)
    stats = same.stats()
    assert stats["proposed_tokens"] / stats["row_target_calls"] > 4
    # A draft that rarely agrees (alpha ~0.2): Theorem 3.8 with c = 0.1 is
    # best at gamma = 1 for alpha < ~0.35, so after the prior (alpha 0.5)
    # wears off the proposals per row and round approach 1.
    other = keras_specdec.SpeculativeSampler(
        tiny_causal_lm("gpt2", "draft", 3),
        "auto",
        max_speculative_tokens=6,
        cost_coefficient=0.1,
    )
    run(target, other, inputs)
    stats = other.stats()
    assert stats["acceptance_rate"] < 0.3
    assert stats["proposed_tokens"] / stats["row_target_calls"] < 1.6


def test_verify_costs_steer_the_theorem_schedule():
    target = tiny_causal_lm("gpt2", "target", seed=1)
    inputs = ragged(40)
    expected = run(target, "greedy", inputs)
    # Identical draft (alpha -> 1) and c = 0.01: with free verification the
    # theorem wants the largest gamma (previous test). If a pass of gamma + 1
    # tokens costs v = 1 + 2 gamma target steps, (gamma + 1) / (0.01 gamma + v)
    # is largest at gamma = 1 (0.66 vs 0.54 at gamma 6): one proposal a round.
    sampler = keras_specdec.SpeculativeSampler(
        noisy_copy(target, 0.0),
        "auto",
        max_speculative_tokens=6,
        cost_coefficient=0.01,
        verify_costs={g: 1.0 + 2.0 * g for g in range(1, 7)},
    )
    np.testing.assert_array_equal(run(target, sampler, inputs), expected)
    stats = sampler.stats()
    assert stats["proposed_tokens"] / stats["row_target_calls"] < 1.2
    config = sampler.get_config()
    assert config["verify_costs"]["6"] == 13.0
    # (A model draft's config holds no weights: pass the model itself.)
    restored = keras_specdec.SpeculativeSampler.from_config(
        {**config, "draft": sampler.draft}
    )
    assert restored.verify_costs == sampler.verify_costs
    # Gammas without a verify pass of their own are never chosen; the
    # nearest measured v stands in for gammas that were not measured.
    assert sampler._verify_gammas(8) == [1, 2, 3, 4, 6, 8]
    assert sampler._verify_gammas(5) == [1, 2, 3, 4, 5]
    partial = keras_specdec.SpeculativeSampler(
        noisy_copy(target, 0.0),
        "auto",
        cost_coefficient=0.1,
        verify_costs={1: 1.2, 8: 2.0},
    )
    assert partial._verify_cost(3) == 1.2 and partial._verify_cost(6) == 2.0
    # With verify costs, the theorem only picks measured gammas.
    assert partial._theorem_candidates([1, 2, 3, 4, 6, 8]) == [1, 8]
    assert sampler._theorem_candidates([1, 2, 3, 4, 6]) == [1, 2, 3, 4, 6]
    with pytest.raises(ValueError, match="verify_costs"):
        keras_specdec.SpeculativeSampler(
            noisy_copy(target, 0.0), "auto", cost_coefficient=0.1, verify_costs={1: 0}
        )


@pytest.mark.parametrize("max_gamma", [4, 5])
def test_auto_round_is_the_fixed_gamma_round(max_gamma):
    """An adaptive round of size k runs the same computation as a fixed
    gamma = k round: with c = 0 and free verification Theorem 3.8 always
    picks the maximum, and with the same seed the sampled tokens and every
    counter equal the fixed-gamma sampler's (the random draws are consumed in
    the same order: k proposals, the acceptance uniforms, the recovered or
    bonus token). A round that drafted a different number of tokens, verified
    a different window, or reused a seed inside the `switch` would differ.
    max_gamma 5 is not in VERIFY_GAMMAS: its own round is added."""
    target = tiny_causal_lm("gpt2", "target", seed=1)
    draft = tiny_causal_lm("gpt2", "draft", 3)
    inputs = ragged(40)
    outputs, stats = [], []
    for gamma in ("auto", max_gamma):
        sampler = keras_specdec.SpeculativeSampler(
            draft,
            gamma,
            base_sampler=keras_hub.samplers.TopKSampler(k=8, temperature=1.3),
            seed=11,
            max_speculative_tokens=max_gamma,
            cost_coefficient=0.0,
        )
        outputs.append(run(target, sampler, inputs))
        stats.append(sampler.stats())
    np.testing.assert_array_equal(outputs[0], outputs[1])
    assert stats[0] == stats[1]
    # Sampling happened (not every proposal accepted, tokens differ from
    # greedy), so the comparison is not vacuous.
    assert 0 < stats[0]["accepted_tokens"] < stats[0]["draft_tokens"]
    assert stats[0]["proposed_tokens"] / stats[0]["row_target_calls"] > 3


def test_auto_needs_cost_coefficient_for_model_drafts():
    draft = tiny_causal_lm("gpt2", "draft", 3)
    with pytest.raises(ValueError, match="cost_coefficient"):
        keras_specdec.SpeculativeSampler(draft, "auto")
    with pytest.raises(ValueError, match="gamma_schedule"):
        keras_specdec.SpeculativeSampler(draft, "auto", gamma_schedule="fast")
    with pytest.raises(ValueError, match="num_speculative_tokens"):
        keras_specdec.SpeculativeSampler(draft, "many")
    # Model-free drafts cost ~nothing: c defaults to 0.
    unigram = keras_specdec.UnigramDraft(np.ones(48))
    assert keras_specdec.SpeculativeSampler(unigram, "auto").cost_coefficient == 0.0


@pytest.mark.parametrize(
    "schedule,verification",
    [("theorem", "block"), ("heuristic", "block"), ("heuristic", "token")],
    ids=["theorem", "heuristic", "heuristic-token"],
)
def test_auto_gamma_sequence_distribution_is_exact(schedule, verification):
    target = tiny_gpt2(seed=1)
    draft = noisy_copy(target, 1.0, seed=2)
    inputs = ragged_inputs([[1, 2, 3]], 7)
    base = keras_hub.samplers.TopPSampler(p=0.7, temperature=0.9)
    sampler = keras_specdec.SpeculativeSampler(
        draft,
        "auto",
        base_sampler=base,
        max_speculative_tokens=3,
        gamma_schedule=schedule,
        cost_coefficient=0.3,
        verification=verification,  # rounds of every size, both verifiers
    )
    samples = sample_many(target, sampler, inputs, 100_000, seed=5)
    exact = exact_joint(target, np.array([1, 2, 3]), 4, base)
    tv, floor_mean, floor_std, counts = tv_and_noise_floor(samples[:, 0, 3:], exact)
    assert counts[exact == 0].sum() == 0
    # Same threshold and reasoning as tests/distribution_test.py.
    assert tv < floor_mean + 4 * floor_std, (tv, floor_mean, floor_std)
