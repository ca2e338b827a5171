"""`ModelAdapter.decode_rows`: one cache position per row, any family."""

import jax
import numpy as np
import pytest
from tiny_models import seq2seq_inputs, tiny_causal_lm, tiny_seq2seq_lm

import keras_specdec
from keras_specdec import model_utils, models

BATCH, LENGTH = 3, 12


def _slice_rows(state, axes, row):
    return jax.tree.map(
        lambda x, a: x if a is None else jax.lax.slice_in_dim(x, row, row + 1, axis=a),
        state,
        axes,
        is_leaf=lambda x: x is None,
    )


def _models():
    yield "gpt2", lambda: tiny_causal_lm("gpt2", "draft")
    yield "t5", lambda: tiny_seq2seq_lm("t5", "draft")
    yield "prompt_lookup", lambda: keras_specdec.PromptLookupDraft(48)
    # Gemma3 (a tuple of caches per layer), Llama and T5Gemma run through
    # the generate() identity tests; eager calls here cost ~20 s a model.


@pytest.mark.parametrize("name,build", list(_models()), ids=[n for n, _ in _models()])
def test_decode_rows_equals_one_call_per_row(name, build, request):
    model = build()
    rng = np.random.default_rng(0)
    token_ids = rng.integers(1, 40, (BATCH, LENGTH)).astype("int32")
    padding_mask = np.ones((BATCH, LENGTH), bool)
    index = np.array([2, 5, 9], "int32")  # each row its own position
    if models.adapt(model).is_seq2seq:
        inputs = seq2seq_inputs([[5, 6, 7]] * BATCH, [[1]] * BATCH, 8, LENGTH)
        token = model_utils._GENERATE_INPUTS.set(inputs)
        request.addfinalizer(lambda: model_utils._GENERATE_INPUTS.reset(token))
    adapter = models.adapt(model)
    state = adapter.init_state(token_ids, padding_mask)
    axes = adapter.batch_axes(state, token_ids, padding_mask)
    chunk = np.stack([token_ids[i, index[i] : index[i] + 3] for i in range(BATCH)])
    logits, _, new_state = adapter.decode_rows(state, chunk, index, axes)
    for row in range(BATCH):
        expected, _, expected_state = adapter.decode(
            _slice_rows(state, axes, row), chunk[row : row + 1], index[row]
        )
        np.testing.assert_allclose(logits[row], expected[0], atol=1e-5)
        for a, b in zip(
            jax.tree.leaves(_slice_rows(new_state, axes, row)),
            jax.tree.leaves(expected_state),
        ):
            np.testing.assert_allclose(a, b, atol=1e-5)
