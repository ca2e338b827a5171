"""keras_specdec.heads.DraftHead and keras_specdec.head_distill on a tiny
random GPT-2 target (tests/tiny_models.py).

Exactness of the head as a draft inside the sampler is tested with the
sampler's model interface; these tests cover the head itself: shapes, that
its KV cache reproduces the uncached pass, that config / preset round trips
keep its logits, and that a short `distill_head` run trains and resumes.
"""

import keras
import numpy as np
import pytest
from tiny_models import VOCAB, tiny_causal_lm

from keras_specdec import head_distill, heads


def tokens(num, length=16, seed=0):
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, VOCAB, (num, length)).astype("int32")
    return {"token_ids": ids, "padding_mask": np.ones((num, length), bool)}


@pytest.fixture(scope="module")
def target():
    return tiny_causal_lm("gpt2", "target", seed=0)


def _inputs(target, num=2, length=12, seed=0):
    data = tokens(num, length, seed)
    hidden, logits = heads.target_features(target, data["token_ids"])
    return data["token_ids"], heads.shift_right(hidden), hidden, logits


def test_shapes_and_target_features_match_call_with_cache(target):
    head = heads.DraftHead.from_target(target)
    ids, fed, hidden, logits = _inputs(target)
    d = target.backbone.hidden_dim
    assert hidden.shape == (2, 12, d) and logits.shape == (2, 12, VOCAB)
    # target_features gives call_with_cache's hidden states (post layer norm).
    cache = keras.ops.zeros((2, target.backbone.num_layers, 2, 12, 4, d // 4))
    cached_logits, cached_hidden, _ = target.call_with_cache(ids, cache, 0)
    np.testing.assert_allclose(cached_hidden, hidden, atol=1e-5)
    np.testing.assert_allclose(cached_logits, logits, atol=1e-4)
    head_logits, head_hidden = head({"token_ids": ids, "target_hidden": fed})
    assert head_logits.shape == (2, 12, VOCAB) and head_hidden.shape == (2, 12, d)
    cache = head.build_cache(2, 12)
    assert cache.shape[0] == 2 and cache.shape[2] == 12 + heads.CACHE_MARGIN
    # The frozen embedding is the target's.
    np.testing.assert_array_equal(
        head.token_embedding.embeddings, target.backbone.token_embedding.embeddings
    )
    assert not head.token_embedding.trainable


def test_cached_chunks_equal_token_by_token_and_full_pass(target):
    head = heads.DraftHead.from_target(target)
    ids, fed, _, _ = _inputs(target)
    full_logits, full_hidden = head({"token_ids": ids, "target_hidden": fed})
    # Chunks of 5 + 7 positions.
    cache = head.build_cache(2, 12)
    a = head.call_with_cache(ids[:, :5], fed[:, :5], cache, 0)
    b = head.call_with_cache(ids[:, 5:], fed[:, 5:], a[2], 5)
    chunked = np.concatenate([a[0], b[0]], axis=1)
    # One position at a time.
    cache = head.build_cache(2, 12)
    steps = []
    for t in range(12):
        logits, _, cache = head.call_with_cache(
            ids[:, t : t + 1], fed[:, t : t + 1], cache, t
        )
        steps.append(logits)
    single = np.concatenate(steps, axis=1)
    np.testing.assert_allclose(chunked, single, atol=1e-4)
    np.testing.assert_allclose(chunked, full_logits, atol=1e-4)
    np.testing.assert_allclose(np.concatenate([a[1], b[1]], 1), full_hidden, atol=1e-5)
    # A window at the very end of the cache does not clamp.
    cache = head.build_cache(2, 12)
    late, _, _ = head.call_with_cache(ids[:, :5], fed[:, :5], cache, 12 + 28)
    assert np.isfinite(np.asarray(late)).all()


def test_config_and_preset_round_trip(target, tmp_path):
    head = heads.DraftHead.from_target(target)
    ids, fed, _, _ = _inputs(target)
    inputs = {"token_ids": ids, "target_hidden": fed}
    # A bare config has no trained weights: used as a draft it is refused.
    bare = heads.DraftHead.from_config(head.get_config())
    assert bare.get_config() == head.get_config()
    with pytest.raises(ValueError, match="from_preset"):
        bare.check_weights()
    bare.set_weights(head.get_weights())
    bare.check_weights()
    np.testing.assert_array_equal(bare(inputs)[0], head(inputs)[0])
    # Preset: float32 kept exactly; float16 on disk rounds the weights.
    head.save_to_preset(str(tmp_path / "f32"), float16=False)
    loaded = heads.DraftHead.from_preset(str(tmp_path / "f32"))
    np.testing.assert_array_equal(loaded(inputs)[0], head(inputs)[0])
    head.save_to_preset(str(tmp_path / "f16"))
    loaded = heads.DraftHead.from_preset(str(tmp_path / "f16"))
    for w, v in zip(head.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(
            np.asarray(w, "float16"), np.asarray(v, "float16")
        )
    np.testing.assert_allclose(loaded(inputs)[0], head(inputs)[0], atol=2e-2)
    with pytest.raises(ValueError, match="is missing"):
        heads.DraftHead.from_preset(str(tmp_path / "nothing"))
    with pytest.raises(ValueError, match="ReversibleEmbedding"):
        heads.DraftHead.from_target(object())
    with pytest.raises(ValueError, match="divisible"):
        heads.DraftHead(VOCAB, 30, num_heads=4)


class StopAfterEpoch(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        self.weights = [np.array(w) for w in self.model.head.get_weights()]
        self.iterations = int(self.model.optimizer.iterations.numpy())
        raise KeyboardInterrupt("simulated interruption")


class RecordStart(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.weights = [np.array(w) for w in self.model.head.get_weights()]
        self.iterations = int(self.model.optimizer.iterations.numpy())


def test_distill_head_trains_and_resumes(target, tmp_path):
    data = tokens(8, seed=1)
    held_out = tokens(4, seed=2)
    target_weights = [np.array(w) for w in target.get_weights()]
    head = heads.DraftHead.from_target(target)
    backup = str(tmp_path / "backup")
    kwargs = dict(epochs=2, steps_per_epoch=1, batch_size=4, verbose=0)
    stop = StopAfterEpoch()
    with pytest.raises(KeyboardInterrupt):
        head_distill.distill_head(
            target,
            head,
            data,
            callbacks=[keras.callbacks.BackupAndRestore(backup), stop],
            **kwargs,
        )
    head = heads.DraftHead.from_target(target)  # a fresh process
    start = RecordStart()
    result = head_distill.distill_head(
        target,
        head,
        data,
        held_out=held_out,
        callbacks=[keras.callbacks.BackupAndRestore(backup), start],
        **kwargs,
    )
    assert start.iterations == stop.iterations == 1
    for saved, restored in zip(stop.weights, start.weights):
        np.testing.assert_array_equal(saved, restored)
    assert len(result.history.history["loss"]) == 1  # only epoch 2 ran
    assert {"acceptance", "acceptance_2"} <= set(result.history.history)
    for alpha in result[1:]:
        assert 0.0 < alpha <= 1.0
    assert target.trainable
    for before, after in zip(target_weights, target.get_weights()):
        np.testing.assert_array_equal(before, after)


def test_distill_head_bad_inputs(target):
    other = tiny_causal_lm("gpt2", "draft", seed=1)
    with pytest.raises(ValueError, match="DraftHead"):
        head_distill.distill_head(target, other, tokens(2))
    with pytest.raises(ValueError, match="does not match"):
        head_distill.distill_head(target, heads.DraftHead.from_target(other), tokens(2))
    bare = heads.DraftHead.from_config(heads.DraftHead.from_target(target).get_config())
    with pytest.raises(ValueError, match="random"):
        head_distill.distill_head(target, bare, tokens(2))
    with pytest.raises(ValueError, match="temperature"):
        head_distill.HeadDistillationModel(
            target, heads.DraftHead.from_target(target), temperature=0
        )


@pytest.mark.parametrize("num_rows", [2, 1])  # 1: the no-vmap path
def test_adapter_first_and_next_logits_match_the_uncached_head(target, num_rows):
    """The adapter's catch-up call predicts `index` from the target's true
    features (per row, ragged), and its next step feeds the head's own
    estimate: both equal the head's uncached pass on the same inputs."""
    from keras_specdec import models

    head = heads.DraftHead.from_target(target)
    adapter = models.adapt(head)
    assert isinstance(adapter, heads.HeadAdapter) and adapter.reads_target
    gamma, max_length = 3, 16
    rng = np.random.default_rng(3)
    tokens = rng.integers(1, VOCAB, (2, max_length + gamma)).astype("int32")
    index = np.array([5, 3], "int32")  # ragged prompts
    tokens, index = tokens[:num_rows], index[:num_rows]
    mask = np.arange(max_length)[None, :] < index[:, None]
    hidden, _ = heads.target_features(target, tokens[:, :max_length])
    view = models.TargetView(hidden, np.zeros(num_rows, "int32"), (), ())
    state = adapter.init_state(tokens[:, :max_length], mask, view)
    axes = adapter.batch_axes(state, tokens[:, :max_length], mask, view)
    hidden_start = index - 2
    rows = np.arange(gamma + 1)[None, :] + hidden_start[:, None]
    window_hidden = np.take_along_axis(np.asarray(hidden), rows[:, :, None], axis=1)
    round_view = models.TargetView(window_hidden, hidden_start, (), ())
    forced = np.zeros(tokens.shape, bool)
    logits, state = adapter.first_logits(state, tokens, index, forced, axes, round_view)
    fed = np.asarray(heads.shift_right(hidden))
    full_logits, full_hidden = head(
        {"token_ids": tokens[:, :max_length], "target_hidden": fed}
    )
    for row in range(num_rows):
        np.testing.assert_allclose(
            logits[row], full_logits[row, index[row] - 1], atol=1e-4
        )
    # Next step: the token at `index` with the head's own estimate h^_{index-1}.
    logits, state = adapter.next_logits(state, tokens, index, forced, axes)
    own = fed.copy()
    for row in range(num_rows):
        own[row, index[row]] = full_hidden[row, index[row] - 1]
    own_logits, _ = head({"token_ids": tokens[:, :max_length], "target_hidden": own})
    for row in range(num_rows):
        np.testing.assert_allclose(logits[row], own_logits[row, index[row]], atol=1e-4)


def test_greedy_identity_with_a_head_draft(target):
    """Greedy output equals the target's greedy (ragged batch with a 1-token
    prompt); the head is untrained, so this exercises the reject path."""
    import helpers

    import keras_specdec

    head = heads.DraftHead.from_target(target)
    batch = helpers.ragged_batch([[1, 2, 3], [4, 5, 6, 7, 8, 9], [7]], 20)
    expected = helpers.generate(target, "greedy", *batch)
    sampler = keras_specdec.SpeculativeSampler(draft=head, num_speculative_tokens=3)
    out = helpers.generate(target, sampler, *batch)
    np.testing.assert_array_equal(out["token_ids"], expected["token_ids"])
    bare = heads.DraftHead.from_config(head.get_config())
    with pytest.raises(ValueError, match="random"):
        keras_specdec.SpeculativeSampler(draft=bare, num_speculative_tokens=3)
