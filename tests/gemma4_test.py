"""Gemma4 MTP assistants (`Gemma4AssistantCausalLM`) as keras_specdec drafts.

The per-row draft step (`keras_specdec.gemma4`) against KerasHub's own
assistant call, its per-row positions, and NaN-free draft probabilities for
the centroid head (whose q has holes under top-k / top-p)."""

import jax
import keras_hub
import numpy as np
import pytest
from gemma4_models import VOCAB, tiny_gemma4_assistant, tiny_gemma4_target
from helpers import ragged_batch

from keras_specdec import gemma4, rejection

HEADS = {"centroid": True, "dense": False}


@pytest.fixture(scope="module")
def target():
    return tiny_gemma4_target()


@pytest.fixture(scope="module", params=sorted(HEADS))
def assistant(request):
    return tiny_gemma4_assistant(HEADS[request.param])


def prefill(target, prompts, max_length=8):
    """The target's prefill on a ragged batch: (token_ids, hidden, cache)."""
    token_ids, padding_mask = ragged_batch(prompts, max_length)
    hidden, cache = target._build_cache(token_ids, None, None, padding_mask, None)
    return token_ids, np.asarray(hidden), cache


def test_step_with_keras_hub_mask_is_keras_hub_call(target, assistant):
    """`attend_through=position` is exactly KerasHub's `draft_next`: the
    assistant's `call_with_cache` at the fixed position, then the target's
    final soft-cap."""
    token_ids, hidden, cache = prefill(target, [[1, 2, 3, 4, 5, 6]])
    full, local = gemma4.kv_source_layers(target)
    kv = gemma4.shared_kv(cache, (full, local))
    for position in (1, 3, 5):
        embedding = gemma4.scaled_embedding(
            target, token_ids[:, position : position + 1]
        )
        want, want_hidden = assistant.call_with_cache(
            embedding,
            hidden[:, position - 1 : position],
            cache,
            position,
            target_kv_source_full_idx=full,
            target_kv_source_local_idx=local,
        )
        want = gemma4.soft_cap(want[:, 0], target.final_logit_cap)
        logits, next_hidden = gemma4.assistant_step(
            assistant,
            target,
            token_ids[:, position],
            hidden[:, position - 1],
            kv,
            position,
            attend_through=position,
        )
        np.testing.assert_allclose(logits, want, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(next_hidden, want_hidden[:, 0], rtol=1e-6, atol=1e-6)


def test_rows_at_their_own_positions(target, assistant):
    """`assistant_rows` (vmap) gives each row what a batch of one at its own
    position gives, including position 0 (nothing to attend to)."""
    prompts = [[1, 2, 3, 4, 5], [3, 1], [7]]
    token_ids, hidden, cache = prefill(target, prompts)
    kv = np.asarray(gemma4.shared_kv(cache, gemma4.kv_source_layers(target)))
    position = np.array([4, 1, 0], "int32")
    rows = np.arange(3)
    tokens = token_ids[rows, position]
    h = hidden[rows, np.maximum(position - 1, 0)]
    logits, next_hidden = jax.jit(
        lambda *a: gemma4.assistant_rows(assistant, target, *a)
    )(tokens, h, kv, position)
    assert np.isfinite(logits).all() and np.isfinite(next_hidden).all()
    for i in rows:
        one, one_hidden = gemma4.assistant_step(
            assistant, target, tokens[i : i + 1], h[i : i + 1], kv[i : i + 1],
            position[i],
        )  # fmt: skip
        np.testing.assert_allclose(logits[i], one[0], rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(next_hidden[i], one_hidden[0], rtol=1e-5, atol=1e-5)


def test_keys_after_attend_through_are_not_read(target, assistant):
    """The step reads the target's cache only up to `attend_through`: the
    slot at the row's position (a rejected proposal's key/value after a
    round) does not change the draft."""
    token_ids, hidden, cache = prefill(target, [[1, 2, 3, 4, 5, 6]])
    kv = np.asarray(gemma4.shared_kv(cache, gemma4.kv_source_layers(target)))
    position = 4
    args = (token_ids[:, position], hidden[:, position - 1])
    logits, _ = gemma4.assistant_step(assistant, target, *args, kv, position)
    stale = kv.copy()
    stale[:, :, :, position:] = np.random.default_rng(0).normal(
        size=stale[:, :, :, position:].shape
    )
    again, _ = gemma4.assistant_step(assistant, target, *args, stale, position)
    np.testing.assert_array_equal(logits, again)
    moved, _ = gemma4.assistant_step(
        assistant, target, *args, stale, position, attend_through=position
    )
    assert not np.allclose(logits, moved)


def test_centroid_head_q_has_holes_and_stays_finite(target):
    """The centroid head fills the tokens outside its active centroids with
    the smallest active logit - 1 (KerasHub, like HF); top-k / top-p then
    give q exact zeros. q is NaN-free for every base sampler, and so it is
    for logits of -inf (a head that masks with -inf) and for the sampler's
    padding logit."""
    assistant = tiny_gemma4_assistant(True)
    token_ids, hidden, cache = prefill(target, [[1, 2, 3, 4, 5, 6]])
    kv = gemma4.shared_kv(cache, gemma4.kv_source_layers(target))
    logits, _ = gemma4.assistant_step(
        assistant, target, token_ids[:, 5], hidden[:, 4], kv, 5
    )
    logits = np.asarray(logits)
    fill = logits.min()
    # 4 of 8 tokens (2 active centroids of 2 tokens) have their own logit.
    assert (logits > fill).sum() == 4
    holes = logits.copy()
    holes[logits == fill] = -np.inf
    padded = logits.copy()
    padded[logits == fill] = -1e9
    samplers = [
        keras_hub.samplers.GreedySampler(),
        keras_hub.samplers.RandomSampler(temperature=0.7),
        keras_hub.samplers.TopKSampler(k=3, temperature=1.3),
        keras_hub.samplers.TopPSampler(p=0.7, temperature=0.9),
    ]
    for base in samplers:
        for x in (logits, holes, padded):
            q = np.asarray(rejection.adjusted_probabilities(x, base))
            assert np.isfinite(q).all(), (type(base).__name__, x)
            np.testing.assert_allclose(q.sum(-1), 1.0, rtol=1e-5)
        if not isinstance(base, keras_hub.samplers.RandomSampler):
            # top-k / top-p (and greedy) leave the inactive tokens at zero.
            q = np.asarray(rejection.adjusted_probabilities(logits, base))
            assert (q[logits == fill] == 0).all()
    assert logits.shape == (1, VOCAB)


def test_pair_checks_name_the_problem(target):
    assistant = tiny_gemma4_assistant(False)
    gemma4.check_pair(target, assistant)
    gpt2 = keras_hub.models.GPT2CausalLM(
        backbone=keras_hub.models.GPT2Backbone(
            vocabulary_size=VOCAB, num_layers=1, num_heads=1, hidden_dim=8,
            intermediate_dim=8, max_sequence_length=8,
        ),
        preprocessor=None,
    )  # fmt: skip
    with pytest.raises(ValueError, match="`Gemma4CausalLM` target"):
        gemma4.check_pair(gpt2, assistant)
    wrong = keras_hub.models.Gemma4AssistantCausalLM(
        backbone=assistant.backbone,
        backbone_hidden_size=32,
        num_centroids=4,
        centroid_intermediate_top_k=2,
        use_ordered_embeddings=False,
    )
    with pytest.raises(ValueError, match="hidden size 32"):
        gemma4.check_pair(target, wrong)
