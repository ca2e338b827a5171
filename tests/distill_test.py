"""keras_specdec.distill on tiny random models (tests/tiny_models.py).

Distillation data and held-out inputs are uniform random token sequences
(fixed seeds): the target's next-token distribution is a function of the
context that the draft can learn, and alpha is measured on sequences it
never trained on. At temperature 0.1 the tiny target's distributions are
peaked (alpha of the random draft ~0.74 for GPT-2), so the gain is visible;
at temperature 1 these random models are nearly uniform and alpha starts
near 0.97.
"""

import keras
import numpy as np
import pytest
from tiny_models import VOCAB, seq2seq_inputs, tiny_causal_lm, tiny_seq2seq_lm

from keras_specdec import analysis, distill

# Measured on this machine: GPT-2 0.736 -> 0.916, T5 0.804 -> 0.992 (3 epochs
# of 16 steps). The runs are deterministic (fixed seeds, CPU float32), so the
# margin only has to absorb float round-off across platforms; 0.1 is half
# the smaller measured gain.
MIN_GAIN = 0.1


def causal_tokens(num, length=32, seed=0):
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, VOCAB, (num, length)).astype("int32")
    return {"token_ids": ids, "padding_mask": np.ones((num, length), bool)}


def seq2seq_tokens(num, seed=0):
    rng = np.random.default_rng(seed)
    encoder = rng.integers(2, VOCAB, (num, 12)).tolist()
    decoder = [[0] + row for row in rng.integers(2, VOCAB, (num, 15)).tolist()]
    return seq2seq_inputs(encoder, decoder, 12, 16)


def test_divergences_match_the_acceptance_rate():
    rng = np.random.default_rng(0)
    target_logits = rng.normal(size=(3, 5, VOCAB)).astype("float32")
    draft_logits = rng.normal(size=(3, 5, VOCAB)).astype("float32")
    temperature = 0.7
    p = keras.ops.softmax(target_logits / temperature)
    q = keras.ops.softmax(draft_logits / temperature)
    beta = analysis.acceptance_rate(np.asarray(p), np.asarray(q), per_position=True)
    tvd = distill.divergence(
        target_logits, draft_logits, temperature=temperature, kind="tvd"
    )
    np.testing.assert_allclose(np.asarray(tvd), 1.0 - beta, atol=1e-5)
    kl = distill.divergence(target_logits, draft_logits, temperature=temperature)
    assert np.all(np.asarray(kl) > 0)
    same = distill.divergence(target_logits, target_logits, temperature=temperature)
    np.testing.assert_allclose(np.asarray(same), 0.0, atol=1e-5)
    # Greedy: cross-entropy of the draft (temperature 1) to the target argmax.
    greedy = distill.divergence(target_logits, draft_logits, temperature=0)
    label = target_logits.argmax(-1)
    log_q = np.asarray(keras.ops.log_softmax(draft_logits))
    expected = -np.take_along_axis(log_q, label[..., None], -1)[..., 0]
    np.testing.assert_allclose(np.asarray(greedy), expected, rtol=1e-5)


def test_distill_reports_the_analysis_alpha_at_its_temperature():
    # alpha_before is analysis.estimate_alpha at the temperature's base
    # sampler, on the untrained draft (one tiny step of training follows).
    target = tiny_causal_lm("gpt2", "target", seed=0)
    draft = tiny_causal_lm("gpt2", "draft", seed=1)
    held_out = causal_tokens(4, seed=3)
    held_out["padding_mask"][2, 20:] = False  # a shorter row
    expected = analysis.estimate_alpha(
        target, draft, held_out, base_sampler=distill.base_sampler_for(0.5)
    )
    result = distill.distill_draft(
        target,
        draft,
        causal_tokens(2, seed=0),
        held_out=held_out,
        temperature=0.5,
        batch_size=2,
        verbose=0,
    )
    assert result.alpha_before == pytest.approx(expected, abs=1e-6)
    assert result.alpha_after != result.alpha_before  # the draft was trained


def test_distilling_raises_alpha_and_leaves_the_target_alone():
    target = tiny_causal_lm("gpt2", "target", seed=0)
    draft = tiny_causal_lm("gpt2", "draft", seed=1)
    target_weights = [w.copy() for w in target.get_weights()]
    result = distill.distill_draft(
        target,
        draft,
        causal_tokens(256, seed=0),
        held_out=causal_tokens(32, seed=1),
        epochs=3,
        temperature=0.1,
        learning_rate=1e-2,
        verbose=0,
    )
    print("alpha before, after:", result[1:])
    assert result.alpha_after > result.alpha_before + MIN_GAIN, result[1:]
    assert len(result.history.history["loss"]) == 3
    assert result.history.history["loss"][-1] < result.history.history["loss"][0]
    for before, after in zip(target_weights, target.get_weights()):
        np.testing.assert_array_equal(before, after)
    assert target.trainable  # restored


@pytest.mark.slow  # a T5 fit and two alpha passes; the causal test covers distill in CI
def test_distilling_a_t5_draft():
    target = tiny_seq2seq_lm("t5", "target", seed=0)
    draft = tiny_seq2seq_lm("t5", "draft", seed=1)
    target_weights = [w.copy() for w in target.get_weights()]
    result = distill.distill_draft(
        target,
        draft,
        seq2seq_tokens(256, seed=0),
        held_out=seq2seq_tokens(32, seed=1),
        epochs=3,
        temperature=0.1,
        learning_rate=1e-2,
        verbose=0,
    )
    print("alpha before, after:", result[1:])
    assert result.alpha_after > result.alpha_before + MIN_GAIN, result[1:]
    for before, after in zip(target_weights, target.get_weights()):
        np.testing.assert_array_equal(before, after)


class StopAfterEpoch(keras.callbacks.Callback):
    """Interrupts training at the end of epoch `epoch` (as a crash would),
    after recording the draft's weights and the optimizer's step count."""

    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.epoch:
            self.weights = [np.array(w) for w in self.model.draft.get_weights()]
            self.iterations = int(self.model.optimizer.iterations.numpy())
            raise KeyboardInterrupt("simulated interruption")


class RecordStart(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        # BackupAndRestore (listed first) has restored the backup by now.
        self.weights = [np.array(w) for w in self.model.draft.get_weights()]
        self.iterations = int(self.model.optimizer.iterations.numpy())


def test_resume_with_backup_and_restore(tmp_path):
    target = tiny_causal_lm("gpt2", "target", seed=0)
    draft = tiny_causal_lm("gpt2", "draft", seed=1)
    data = causal_tokens(64, seed=0)
    backup = str(tmp_path / "backup")
    stop = StopAfterEpoch(0)
    kwargs = dict(epochs=2, temperature=0.5, verbose=0, shuffle=False)
    with pytest.raises(KeyboardInterrupt):
        distill.distill_draft(
            target,
            draft,
            data,
            callbacks=[keras.callbacks.BackupAndRestore(backup), stop],
            **kwargs,
        )
    # A fresh process: new draft object with other initial weights.
    draft = tiny_causal_lm("gpt2", "draft", seed=7)
    start = RecordStart()
    result = distill.distill_draft(
        target,
        draft,
        data,
        callbacks=[keras.callbacks.BackupAndRestore(backup), start],
        **kwargs,
    )
    assert start.iterations == stop.iterations == 4  # 64 rows / 16 per step
    for saved, restored in zip(stop.weights, start.weights):
        np.testing.assert_array_equal(saved, restored)
    assert len(result.history.history["loss"]) == 1  # only epoch 2 ran


def test_bad_inputs_get_clear_errors():
    target = tiny_causal_lm("gpt2", "target", seed=0)
    draft = tiny_causal_lm("gpt2", "draft", seed=1)
    with pytest.raises(ValueError, match="missing"):
        distill.distill_draft(target, draft, {"token_ids": np.ones((2, 4), "int32")})
    with pytest.raises(ValueError, match="reverse_kl"):
        distill.distill_draft(
            target, draft, causal_tokens(2), temperature=0, divergence="reverse_kl"
        )
    with pytest.raises(ValueError, match="divergence"):
        distill.distill_draft(target, draft, causal_tokens(2), divergence="kl")
    with pytest.raises(ValueError, match="both be causal"):
        distill.distill_draft(target, tiny_seq2seq_lm("t5", "draft"), causal_tokens(2))
    with pytest.raises(ValueError, match="model-free"):
        from keras_specdec import PromptLookupDraft

        distill.distill_draft(target, PromptLookupDraft(VOCAB), causal_tokens(2))


@pytest.mark.slow  # three generate() compiles and a fit: ~1-6 min on 2 cores
def test_string_prompts_on_a_pair_with_preprocessors(tmp_path):
    """The shipped-pair path: models loaded with their preprocessors, the
    target's own translations of source sentences as distillation data."""
    from fake_pairs import make_fake_ende

    from keras_specdec import pairs

    target, draft = pairs.load(make_fake_ende(str(tmp_path / "ende"), 16))
    sources = [src for src, _ in pairs.held_out_pairs(str(tmp_path / "ende"))]
    target.compile(sampler="greedy")
    data = distill.target_generations(target, sources, max_length=16)
    assert data["decoder_token_ids"].shape == (len(sources), 16)
    assert len(data["encoder_token_ids"]) == len(sources)
    result = distill.distill_draft(
        target, draft, data, held_out=data, epochs=1, temperature=0, verbose=0
    )
    assert 0.0 <= result.alpha_before <= 1.0 and 0.0 <= result.alpha_after <= 1.0
    assert target.preprocessor is not None  # restored after generation
    assert draft.generate(sources[:1])  # still a working task with text I/O
