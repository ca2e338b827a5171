"""Prompt lookup in the encoder's input for encoder-decoder targets."""

import itertools

import keras
import keras_hub
import numpy as np
import pytest
from helpers import reference_probs, sample_many, tv_and_noise_floor
from tiny_models import seq2seq_inputs, tiny_seq2seq_lm

import keras_specdec
from keras_specdec.drafts import PromptLookupDraft


def lookup(decoder, index, source=None, gamma=3, **kwargs):
    """(proposals, num_matched) for one row per decoder prompt."""
    draft = PromptLookupDraft(32, max_ngram=2, **kwargs)
    tokens = np.zeros((len(decoder), 8), "int32")
    for row, ids in enumerate(decoder):
        tokens[row, : len(ids)] = ids
    encoder = mask = None
    if source is not None:
        encoder = np.zeros((len(source), 6), "int32")
        mask = np.zeros((len(source), 6), bool)
        for row, ids in enumerate(source):
            encoder[row, : len(ids)] = ids
            mask[row, : len(ids)] = True
    ids, num = draft.lookup(tokens, np.array(index, "int32"), gamma, encoder, mask)
    ids, num = np.asarray(ids), np.asarray(num)
    return [ids[row, : num[row]].tolist() for row in range(len(decoder))]


def test_match_literal_cases():
    # A source span that the decoder prefix continues gives that span's
    # continuation, up to the end of the source: (7, 8) -> 9, 4.
    assert lookup([[1, 7, 8]], [3], [[5, 7, 8, 9, 4]]) == [[9, 4]]
    # Longest match first: the decoder's unigram 8 (at 0, then 6, 7, 8)
    # loses to the bigram (7, 8) in the source.
    assert lookup([[8, 6, 7, 8]], [4], [[7, 8, 9, 3]]) == [[9, 3]]
    # Without the source: the decoder's unigram.
    assert lookup([[8, 6, 7, 8]], [4]) == [[6, 7, 8]]
    # Equal length: the decoder's own tokens win (as decoder-only lookup on
    # source + output would find the later occurrence).
    assert lookup([[7, 8, 5, 7, 8]], [5], [[7, 8, 9]]) == [[5, 7, 8]]
    # The latest occurrence in the source: 7 at 0 and 2 -> 2.
    assert lookup([[3, 7]], [2], [[7, 1, 7, 2]]) == [[2]]
    # Ragged rows in one batch: row 0's source ends after 9 (its padding 0s
    # never match); row 1's key 0 appears only in its padding: no proposal.
    assert lookup([[7], [4, 0]], [1, 2], [[7, 9], [4, 5]]) == [[9], []]
    # The key is the decoder prefix only: at index 1 the key is token 7,
    # not the scratch after it.
    assert lookup([[7, 5, 5]], [1], [[7, 6, 2, 1]], gamma=2) == [[6, 2]]
    # No source: decoder-only lookup, as before.
    assert lookup([[1, 2, 3, 1, 2]], [5]) == [[3, 1, 2]]


def test_search_encoder_is_validated_and_serialized():
    draft = PromptLookupDraft(16, search_encoder=False)
    assert draft.get_config()["search_encoder"] is False
    sampler = keras_specdec.SpeculativeSampler(draft, 2)
    restored = keras_hub.samplers.get(keras_hub.samplers.serialize(sampler))
    assert restored.draft.search_encoder is False
    assert PromptLookupDraft(16).search_encoder is True
    with pytest.raises(ValueError, match="search_encoder"):
        PromptLookupDraft(16, search_encoder="yes")


def generate(model, sampler, inputs):
    model.compile(sampler=sampler)
    out = model.generate(inputs, stop_token_ids=None)
    return np.asarray(out["decoder_token_ids"])


@pytest.mark.parametrize("family", ["bart", "t5gemma"])
def test_greedy_identity_with_encoder_lookup(family):
    """Ragged encoder and decoder inputs; the decoder prompts end with
    tokens of their sources, so the source is where the proposals come from."""
    target = tiny_seq2seq_lm(family, "target", seed=1)
    vocab = target.backbone.vocabulary_size
    inputs = seq2seq_inputs(
        [[5, 6, 7, 8, 9, 10], [11, 12, 13]],
        [[1, 6], [1, 3, 4, 11]],
        encoder_length=8,
        max_length=16,
    )
    expected = generate(target, "greedy", inputs)
    proposed = {}
    for search_encoder in (True, False):
        draft = PromptLookupDraft(vocab, max_ngram=2, search_encoder=search_encoder)
        sampler = keras_specdec.SpeculativeSampler(draft, 3)
        np.testing.assert_array_equal(generate(target, sampler, inputs), expected)
        proposed[search_encoder] = sampler.stats()["proposed_tokens"]
    # The first round of each row proposes its source's continuation
    # (7, 8, 9 and 12, 13), which decoder-only lookup cannot.
    assert proposed[True] > proposed[False]


def test_t5_sequence_distribution_is_exact_with_encoder_lookup():
    """Ragged encoder and decoder inputs, a 5-token vocabulary (the source
    is matched often), sampled rounds of 0 to 2 lookup proposals."""
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
    encoder, decoder, max_length = [[1, 2, 3, 4], [3, 1, 2]], [[0], [0, 3]], 4
    inputs = seq2seq_inputs(encoder, decoder, 4, max_length)
    base = keras_hub.samplers.RandomSampler(temperature=0.8)
    draft = PromptLookupDraft(vocab, max_ngram=2)
    sampler = keras_specdec.SpeculativeSampler(draft, 2, base_sampler=base)
    samples = sample_many(target, sampler, inputs, 100_000, seed=3)
    for row, prompt in enumerate(decoder):
        assert (samples[:, row, : len(prompt)] == prompt).all()
        num_new = max_length - len(prompt)  # 3 and 2
        continuations = np.array(
            list(itertools.product(range(vocab), repeat=num_new)), "int32"
        )
        n = len(continuations)
        decoder_ids = np.concatenate(
            [np.tile(np.array(prompt, "int32"), (n, 1)), continuations], 1
        )
        logits = np.asarray(
            target(
                {
                    "encoder_token_ids": np.repeat(
                        inputs["encoder_token_ids"][row : row + 1], n, 0
                    ),
                    "encoder_padding_mask": np.repeat(
                        inputs["encoder_padding_mask"][row : row + 1], n, 0
                    ),
                    "decoder_token_ids": decoder_ids,
                    "decoder_padding_mask": np.ones_like(decoder_ids, bool),
                }
            )
        )
        exact = np.ones(n)
        for t in range(num_new):
            probs = reference_probs(logits[:, len(prompt) - 1 + t], base)
            exact *= probs[np.arange(n), continuations[:, t]]
        tv, floor_mean, floor_std, counts = tv_and_noise_floor(
            samples[:, row, len(prompt) :], exact
        )
        assert counts[exact == 0].sum() == 0
        # Same threshold and reasoning as tests/distribution_test.py.
        assert tv < floor_mean + 4 * floor_std, (tv, floor_mean, floor_std)
