"""Model-free drafts: unigram, bigram, prompt lookup."""

import keras
import keras_hub
import numpy as np
import pytest
import tensorflow as tf
from helpers import (
    VOCAB,
    exact_joint,
    sample_many,
    tiny_gpt2,
    tv_and_noise_floor,
)
from tiny_models import tiny_causal_lm

import keras_specdec
from keras_specdec import drafts

REPEATING = [5, 6, 7, 8, 5, 6, 7, 8, 5, 6]


def ragged(max_length=24):
    ids = np.zeros((2, max_length), "int32")
    mask = np.zeros_like(ids, bool)
    ids[0, :10], mask[0, :10] = REPEATING, True
    ids[1, :4], mask[1, :4] = [1, 2, 3, 4], True
    return {"token_ids": ids, "padding_mask": mask}


def greedy_reference(target, inputs):
    target.compile(sampler="greedy")
    return np.asarray(target.generate(inputs, stop_token_ids=None)["token_ids"])


def all_drafts(tokens, vocab):
    return [
        drafts.UnigramDraft.fit(tokens, vocab),
        drafts.BigramDraft.fit(tokens, vocab, top_k=4),
        drafts.PromptLookupDraft(vocab, max_ngram=3),
    ]


def test_greedy_identity_with_every_draft():
    target = tiny_causal_lm("gpt2", "target", seed=1)
    inputs = ragged()
    expected = greedy_reference(target, inputs)
    corpus = np.random.default_rng(0).integers(0, 48, 2000)
    for draft in all_drafts(corpus, 48):
        for gamma in (1, 4):
            sampler = keras_specdec.SpeculativeSampler(draft, gamma)
            target.compile(sampler=sampler)
            out = np.asarray(target.generate(inputs, stop_token_ids=None)["token_ids"])
            np.testing.assert_array_equal(out, expected)


def test_prompt_lookup_accepts_more_on_repetitive_text():
    target = tiny_causal_lm("gpt2", "target", seed=1)
    inputs = ragged()
    expected = greedy_reference(target, inputs)  # settles into repeated tokens
    rates = {}
    for draft in (drafts.PromptLookupDraft(48, 3), drafts.UnigramDraft(np.ones(48))):
        sampler = keras_specdec.SpeculativeSampler(draft, 3)
        target.compile(sampler=sampler)
        target.generate(inputs, stop_token_ids=None)
        rates[type(draft).__name__] = sampler.stats()["acceptance_rate"]
    assert expected.shape == (2, 24)
    # Uniform guessing over 48 tokens is accepted ~1/48 of the time; prompt
    # lookup copies earlier n-grams, which greedy text repeats.
    assert rates["PromptLookupDraft"] > 0.4
    assert rates["PromptLookupDraft"] > 5 * rates["UnigramDraft"]


def test_prompt_lookup_proposes_the_follower_of_the_latest_match():
    draft = drafts.PromptLookupDraft(10, max_ngram=3)
    tokens = np.array(
        [[5, 6, 7, 8, 5, 6, 7, 0, 0, 0], [1, 2, 3, 1, 2, 4, 1, 2, 0, 0]], "int32"
    )
    state = draft.init_state(tokens, tokens > 0)
    # Feed position 6 (token 7 / token 1): proposals are for position 7.
    logits, _ = draft.decode(state, tokens[:, 6:7], 6)
    proposal = np.asarray(logits).argmax(-1)[:, 0]
    # Row 0: "5 6 7" occurred before, followed by 8. Row 1: "1" was last seen
    # at position 3 (before position 6), followed by 2.
    assert proposal.tolist() == [8, 2]
    logits, _ = draft.decode(state, tokens[:, 7:8], 7)
    # Row 1 at position 8: "1 2" last occurred at 3..4, followed by 4.
    assert np.asarray(logits).argmax(-1)[1, 0] == 4


def test_fit_from_tf_data_and_round_trip():
    ds = tf.data.Dataset.from_tensor_slices(np.array([[1, 2, 1, 3], [2, 2, 1, 2]]))
    bigram = drafts.BigramDraft.fit(ds, vocabulary_size=5, top_k=2)
    assert bigram.next_ids[1].tolist() == [2, 3]
    unigram = drafts.UnigramDraft.fit(ds, vocabulary_size=5)
    np.testing.assert_allclose(unigram.probabilities, [0, 3 / 8, 4 / 8, 1 / 8, 0])
    for draft in (bigram, unigram, drafts.PromptLookupDraft(5, 2)):
        sampler = keras_specdec.SpeculativeSampler(draft, 2)
        restored = keras_hub.samplers.get(keras_hub.samplers.serialize(sampler))
        assert type(restored.draft) is type(draft)
        assert restored.draft.get_config() == draft.get_config()


@pytest.mark.parametrize(
    "kind,verification",
    [
        ("unigram", "block"),
        ("bigram", "block"),
        # q a point mass, rounds of size 0 .. gamma, both verifiers.
        ("prompt_lookup", "block"),
        ("prompt_lookup", "token"),
    ],
    ids=["unigram", "bigram", "prompt_lookup", "prompt_lookup-token"],
)
def test_sequence_distribution_is_exact_with_model_free_drafts(kind, verification):
    target = tiny_gpt2(seed=1)
    rng = np.random.default_rng(0)
    corpus = rng.integers(0, VOCAB, 500)
    draft = {
        "unigram": drafts.UnigramDraft.fit(corpus, VOCAB),
        "bigram": drafts.BigramDraft.fit(corpus, VOCAB, top_k=3),
        "prompt_lookup": drafts.PromptLookupDraft(VOCAB, max_ngram=2),
    }[kind]
    prompt = [1, 2, 1, 2]
    max_length = 7
    token_ids = np.zeros((1, max_length), "int32")
    token_ids[0, :4] = prompt
    padding_mask = token_ids > 0
    padding_mask[0, :4] = True
    base = keras_hub.samplers.TopKSampler(k=3, temperature=1.3)
    sampler = keras_specdec.SpeculativeSampler(
        draft, 2, base_sampler=base, verification=verification
    )
    inputs = {"token_ids": token_ids, "padding_mask": padding_mask}
    samples = sample_many(target, sampler, inputs, 100_000, seed=7)
    exact = exact_joint(target, np.array(prompt), 3, base)
    tv, floor_mean, floor_std, counts = tv_and_noise_floor(samples[:, 0, 4:], exact)
    assert counts[exact == 0].sum() == 0
    # Same threshold and reasoning as tests/distribution_test.py.
    assert tv < floor_mean + 4 * floor_std, (tv, floor_mean, floor_std)


def test_bigram_proposes_token_zero_after_a_token_with_few_successors():
    # Corpus 1, 0, 1, 0, ...: P(0 | 1) = 1 and P(1 | 0) = 1, each with one
    # successor, so top_k - 1 slots are unused. They must not hide token 0.
    draft = drafts.BigramDraft.fit(np.array([1, 0] * 10), vocabulary_size=4, top_k=3)
    logits, _ = draft.decode((), np.array([[1, 0]]), 0)
    sampler = keras_hub.samplers.RandomSampler()
    q = np.asarray(keras_specdec.rejection.adjusted_probabilities(logits, sampler))
    np.testing.assert_allclose(q[0, 0], [1, 0, 0, 0], atol=1e-6)  # q(. | 1)
    np.testing.assert_allclose(q[0, 1], [0, 1, 0, 0], atol=1e-6)  # q(. | 0)


def test_bigram_probabilities_match_the_counts():
    tokens = np.array([2, 0, 2, 0, 2, 3, 2, 1, 0, 3])
    draft = drafts.BigramDraft.fit(tokens, vocabulary_size=5, top_k=4)
    logits, _ = draft.decode((), np.array([[2, 3, 4]]), 0)
    q = np.exp(np.asarray(logits))
    # Successors of 2: 0 twice, 3 once, 1 once.
    np.testing.assert_allclose(q[0, 0], [0.5, 0.25, 0, 0.25, 0], atol=1e-6)
    # 3 is followed by 2 once (its last occurrence has no successor).
    np.testing.assert_allclose(q[0, 1], [0, 0, 1, 0, 0], atol=1e-6)
    # 4 never occurs as a predecessor: the unigram top-4 (2: 4, 0: 3, 3: 2, 1: 1).
    np.testing.assert_allclose(q[0, 2], [0.3, 0.1, 0.4, 0.2, 0], atol=1e-6)


@pytest.mark.parametrize("fit", [drafts.UnigramDraft.fit, drafts.BigramDraft.fit])
@pytest.mark.parametrize(
    "tokens", [[], np.array([]), np.zeros((0,), "int32"), [np.zeros((0,), "int32")]]
)
def test_fit_without_tokens_is_refused(fit, tokens):
    with pytest.raises(ValueError, match="got no tokens"):
        fit(tokens, 8)


@pytest.mark.parametrize("fit", [drafts.UnigramDraft.fit, drafts.BigramDraft.fit])
def test_fit_with_ids_outside_the_vocabulary_is_refused(fit):
    with pytest.raises(
        ValueError, match=r"token id 9 is outside the vocabulary \[0, 8\)"
    ):
        fit(np.array([1, 2, 9, 3]), 8)
    with pytest.raises(ValueError, match=r"token id -1 is outside"):
        fit(np.array([1, -1]), 8)
    with pytest.raises(ValueError, match="integer token ids"):
        fit(np.array([0.5, 1.0]), 8)
    with pytest.raises(ValueError, match="vocabulary_size. must be a positive int"):
        fit(np.array([1, 2]), "8")


def test_unigram_refuses_weights_that_are_not_a_distribution():
    with pytest.raises(ValueError, match="all zero"):
        drafts.UnigramDraft(np.zeros(8))
    with pytest.raises(ValueError, match="non-negative"):
        drafts.UnigramDraft([0.5, -0.1, 0.6])
    with pytest.raises(ValueError, match="non-negative"):
        drafts.UnigramDraft([0.5, np.nan])
    with pytest.raises(ValueError, match="shape"):
        drafts.UnigramDraft(np.ones((2, 3)))
    np.testing.assert_allclose(drafts.UnigramDraft([1, 3]).probabilities, [0.25, 0.75])


def test_bigram_refuses_bad_tables():
    with pytest.raises(ValueError, match="same shape"):
        drafts.BigramDraft(np.zeros((3, 2), "int32"), np.ones((3, 1)))
    with pytest.raises(ValueError, match="id 5, outside the vocabulary"):
        drafts.BigramDraft([[5], [0], [1]], np.ones((3, 1)))
    with pytest.raises(ValueError, match="non-negative"):
        drafts.BigramDraft([[0], [0], [1]], [[1.0], [-1.0], [1.0]])
    with pytest.raises(ValueError, match="row 1 is all zero"):
        drafts.BigramDraft([[0], [0], [1]], [[1.0], [0.0], [1.0]])


def test_fit_on_a_single_token():
    bigram = drafts.BigramDraft.fit(np.array([3]), vocabulary_size=5, top_k=2)
    logits, _ = bigram.decode((), np.array([[0, 3]]), 0)
    assert np.asarray(logits).argmax(-1).tolist() == [[3, 3]]
    unigram = drafts.UnigramDraft.fit([np.array([3])], vocabulary_size=5)
    assert unigram.probabilities.tolist() == [0, 0, 0, 1, 0]


def test_prompt_lookup_counts_only_matched_proposals():
    draft = drafts.PromptLookupDraft(10, max_ngram=2)
    tokens = np.array([[5, 6, 7, 8, 5, 6, 0, 0], [1, 2, 3, 4, 0, 0, 0, 0]], "int32")
    index = np.array([6, 4], "int32")
    # Row 0: "5 6" (positions 4..5) occurred at 0..1, followed by 7 8 5 6:
    # gamma 3 caps it at 3. Row 1: no token repeats, nothing matched.
    num_matched = draft.max_proposals((), tokens, index, 3)
    assert np.asarray(num_matched).tolist() == [3, 0]
    logits, _ = draft.decode(draft.init_state(tokens, tokens > 0), tokens[:, 5:6], 5)
    assert np.asarray(logits).argmax(-1)[0, 0] == 7
    # Only the tokens that follow the match count: the match of "6" (n = 1)
    # at position 1 in [5, 6, 7, 6] leaves 7, 6 after it.
    short = np.array([[5, 6, 7, 6, 0]], "int32")
    assert np.asarray(draft.max_proposals((), short, np.array([4]), 4)).tolist() == [2]


def test_prompt_lookup_copies_the_tokens_after_its_match_in_one_lookup():
    draft = drafts.PromptLookupDraft(10, max_ngram=2)
    tokens = np.array(
        [[5, 6, 7, 8, 5, 6, 0, 0, 0], [1, 2, 3, 4, 0, 0, 0, 0, 0]], "int32"
    )
    index = np.array([6, 4], "int32")
    proposals, num_matched = draft.propose_block((), tokens, index, 3)
    # Row 0: "5 6" ends at 5 and occurred at 0..1: copy 7 8 5. Row 1: no
    # match, nothing judged (its proposals are whatever the copy reads).
    assert np.asarray(num_matched).tolist() == [3, 0]
    assert np.asarray(proposals)[0].tolist() == [7, 8, 5]
    # The same as asking for one proposal at a time on the extended text.
    extended = tokens.copy()
    for j in range(3):
        logits, _ = draft.decode(
            draft.init_state(extended, extended > 0), extended[:, 5 + j : 6 + j], 5 + j
        )
        extended[0, 6 + j] = np.asarray(logits).argmax(-1)[0, 0]
    assert extended[0, 6:9].tolist() == [7, 8, 5]


def test_prompt_lookup_without_matches_takes_plain_steps():
    target = tiny_causal_lm("gpt2", "target", seed=1)
    max_length = 12
    ids = np.zeros((2, max_length), "int32")
    mask = np.zeros_like(ids, bool)
    ids[0, :10], mask[0, :10] = REPEATING, True
    ids[1, :4], mask[1, :4] = [1, 2, 3, 4], True
    inputs = {"token_ids": ids, "padding_mask": mask}
    expected = greedy_reference(target, inputs)
    # min_ngram = max_ngram = 4 on the no-repeat row: nothing ever matches.
    draft = drafts.PromptLookupDraft(48, max_ngram=4, min_ngram=4)
    sampler = keras_specdec.SpeculativeSampler(draft, 4)
    target.compile(sampler=sampler)
    single = {k: v[1:] for k, v in inputs.items()}
    out = np.asarray(target.generate(single, stop_token_ids=None)["token_ids"])
    np.testing.assert_array_equal(out, expected[1:])
    # The greedy text, 1 2 3 4 26 26 26 26 21 34 29 29, repeats no 4-gram:
    # every round is a plain step, one target call per new token and no
    # proposals.
    stats = sampler.stats()
    assert stats["target_calls"] == max_length - 4
    assert stats["proposed_tokens"] == 0
    # Ragged batch with a matching and a non-matching row stays identical.
    sampler.reset_stats()
    out = np.asarray(target.generate(inputs, stop_token_ids=None)["token_ids"])
    np.testing.assert_array_equal(out, expected)


class _CappedBigram(drafts.BigramDraft):
    """A bigram draft that may propose only `index mod 3` tokens per row: one
    call mixes rounds of size 0 (a plain step), 1 and 2, drafted in a loop
    to the round's size (a draft with `max_proposals` but no
    `propose_block`)."""

    def max_proposals(self, state, tokens, index, gamma):
        return keras.ops.minimum(index % 3, gamma)


def test_a_draft_that_proposes_fewer_keeps_greedy_identity():
    target = tiny_causal_lm("gpt2", "target", seed=1)
    inputs = ragged()
    expected = greedy_reference(target, inputs)
    corpus = np.random.default_rng(0).integers(0, 48, 2000)
    sampler = keras_specdec.SpeculativeSampler(
        _CappedBigram.fit(corpus, 48, top_k=4), 4
    )
    target.compile(sampler=sampler)
    out = np.asarray(target.generate(inputs, stop_token_ids=None)["token_ids"])
    np.testing.assert_array_equal(out, expected)
    stats = sampler.stats()
    # Some rounds propose (index mod 3 > 0), none more than 2 per row.
    assert 0 < stats["proposed_tokens"] <= 2 * stats["row_target_calls"]


@pytest.mark.parametrize(
    "kwargs, argument",
    [
        (dict(vocabulary_size=48, max_ngram=1.5), "max_ngram"),
        (dict(vocabulary_size=48, min_ngram=1.0), "min_ngram"),
        (dict(vocabulary_size=48, max_ngram=True), "max_ngram"),
        (dict(vocabulary_size=48, max_ngram="3"), "max_ngram"),
        (dict(vocabulary_size=48, min_ngram=0), "min_ngram"),
        (dict(vocabulary_size=48, max_ngram=2, min_ngram=3), "min_ngram"),
        (dict(vocabulary_size=48.5), "vocabulary_size"),
        (dict(vocabulary_size=0), "vocabulary_size"),
    ],
)
def test_prompt_lookup_refuses_arguments_that_are_not_ints(kwargs, argument):
    # max_ngram=1.5 used to be accepted and fail inside tracing with
    # "'float' object cannot be interpreted as an integer".
    with pytest.raises(ValueError, match=f"`{argument}`"):
        drafts.PromptLookupDraft(**kwargs)
    draft = drafts.PromptLookupDraft(np.int64(48), np.int32(3), np.int64(2))
    assert (type(draft.max_ngram), type(draft.min_ngram)) == (int, int)
