"""Train a `keras_specdec.heads.DraftHead` on a frozen target (EAGLE-1 style).

The target runs in inference mode inside each training step (no gradient):
its final hidden states h_t and logits on the batch. The head is trained with
teacher forcing, as EAGLE does, on two steps:

- step 1: input (x_t, h_{t-1}) with the target's true h_{t-1} -- what the
  head sees at the first proposal of a round;
- step 2: input (x_t, h^_{t-1}) with the head's own step-1 estimate -- what
  it sees at proposals 2..gamma, where the true feature is not known yet.

Loss per step: ``feature_weight`` * smooth-L1(h^_t, h_t) + ``kl_weight`` *
KL(p_T || q_T) with p_T = softmax(target_logits / T), q_T the head's; the
step-2 loss is weighted by ``step2_weight``. The distribution term compares
the head to the TARGET's distribution, not to the data's next token: the
acceptance rate sum_x min(p, q) = 1 - TV(p, q) depends only on how close q is
to p, and the forward KL gives a dense, mass-covering signal over the whole
vocabulary at every position (Pinsker: TV <= sqrt(KL / 2)), where a one-hot
label says nothing about the rest of p. The feature term (EAGLE's
regression) keeps h^_t usable as the next step's input.

Metrics ``acceptance`` / ``acceptance_2``: mean sum_x min(p, q) at step 1 /
step 2 over the training batches (base sampler at temperature T).
"""

import collections

import keras
import numpy as np
from keras import ops

from keras_specdec import heads, rejection
from keras_specdec.distill import _position_mask, divergence, rejection_sampler

HeadDistillResult = collections.namedtuple(
    "HeadDistillResult",
    ["history", "alpha_before", "alpha_after", "alpha2_before", "alpha2_after"],
)
HeadDistillResult.__doc__ = """What `distill_head` returns.

- history: the `keras.callbacks.History` of `fit`.
- alpha_before, alpha_after: step-1 acceptance rate on `held_out`
  (`estimate_head_alpha`), before and after training (None without it).
- alpha2_before, alpha2_after: the same at step 2 (the head fed its own
  feature estimate).
"""


def _smooth_l1(pred, true):
    """Per-position smooth-L1 (Huber, delta 1), mean over features."""
    diff = ops.abs(ops.cast(pred, "float32") - ops.cast(true, "float32"))
    per = ops.where(diff < 1.0, 0.5 * diff * diff, diff - 0.5)
    return ops.mean(per, axis=-1)  # (batch, length)


class HeadDistillationModel(keras.Model):
    """Keras model that trains `head` on the frozen `target` (see module doc).

    `call({"token_ids", "padding_mask"})` returns the target's hidden states
    and logits and the head's two teacher-forced steps; `fit(x)` needs no
    labels. Only the head's weights are trainable (`target.trainable` is set
    to False; `distill_head` restores it).

    Args:
        target: KerasHub causal LM (frozen).
        head: `DraftHead` for it.
        temperature: T of the distribution term (> 0).
        feature_weight, kl_weight: weights of the two loss terms.
        step2_weight: weight of the step-2 loss (0 trains step 1 only).
        feature_noise: half-width of uniform noise added to the true
            features fed at step 1 in training (EAGLE uses noise; 0 = off).
    """

    def __init__(
        self,
        target,
        head,
        *,
        temperature=1.0,
        feature_weight=1.0,
        kl_weight=1.0,
        step2_weight=0.5,
        feature_noise=0.0,
        seed=0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if temperature <= 0:
            raise ValueError(
                f"distill_head needs temperature > 0, got {temperature}; for "
                "greedy decoding train at temperature 1 (the argmax of a close "
                "distribution is the argmax)."
            )
        self.target = target
        self.head = head
        self.temperature = float(temperature)
        self.feature_weight = float(feature_weight)
        self.kl_weight = float(kl_weight)
        self.step2_weight = float(step2_weight)
        self.feature_noise = float(feature_noise)
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.target.trainable = False
        self.acceptance_tracker = keras.metrics.Mean(name="acceptance")
        self.acceptance2_tracker = keras.metrics.Mean(name="acceptance_2")

    def call(self, inputs, training=False):
        token_ids = inputs["token_ids"]
        padding_mask = inputs["padding_mask"]
        hidden, logits = heads.target_features(self.target, token_ids, padding_mask)
        hidden = ops.stop_gradient(hidden)  # (batch, length, d): h_t
        logits = ops.stop_gradient(logits)  # (batch, length, vocab)
        fed = heads.shift_right(hidden)  # h_{t-1}
        if training and self.feature_noise > 0:
            fed = fed + keras.random.uniform(
                ops.shape(fed),
                -self.feature_noise,
                self.feature_noise,
                seed=self.seed_generator,
            )
        logits_1, hidden_1 = self.head(
            {"token_ids": token_ids, "target_hidden": fed}, training=training
        )
        out = {
            "target_hidden": hidden,
            "target_logits": logits,
            "head_logits": logits_1,
            "head_hidden": hidden_1,
        }
        # Step 2: the head's own estimate h^_{t-1} in place of h_{t-1}.
        logits_2, hidden_2 = self.head(
            {"token_ids": token_ids, "target_hidden": heads.shift_right(hidden_1)},
            training=training,
        )
        out["head_logits_2"] = logits_2
        out["head_hidden_2"] = hidden_2
        return out

    def _step_loss(self, y_pred, suffix, positions, real):
        kl = divergence(
            y_pred["target_logits"],
            y_pred["head_logits" + suffix],
            temperature=self.temperature,
            kind="forward_kl",
        )  # (batch, length)
        feature = _smooth_l1(
            y_pred["head_hidden" + suffix], y_pred["target_hidden"]
        )  # (batch, length)
        kl = ops.sum(kl * positions) / ops.maximum(ops.sum(positions), 1.0)
        feature = ops.sum(feature * real) / ops.maximum(ops.sum(real), 1.0)
        return self.kl_weight * kl + self.feature_weight * feature

    def compute_loss(
        self, x=None, y=None, y_pred=None, sample_weight=None, training=True
    ):
        positions = ops.cast(_position_mask(x["padding_mask"]), "float32")
        real = ops.cast(x["padding_mask"], "float32")
        loss = self._step_loss(y_pred, "", positions, real)
        if self.step2_weight:
            # Position 0's step-2 input is zeros either way; count t >= 1.
            later = ops.concatenate([ops.zeros_like(real[:, :1]), real[:, 1:]], axis=1)
            loss = loss + self.step2_weight * self._step_loss(
                y_pred, "_2", positions * later, real * later
            )
        return loss

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        sampler = rejection_sampler(self.temperature)
        weights = ops.cast(_position_mask(x["padding_mask"]), "float32")
        p = rejection.adjusted_probabilities(y_pred["target_logits"], sampler)
        for key, tracker in (
            ("head_logits", self.acceptance_tracker),
            ("head_logits_2", self.acceptance2_tracker),
        ):
            q = rejection.adjusted_probabilities(y_pred[key], sampler)
            beta = ops.sum(ops.minimum(p, q), axis=-1)  # (batch, length)
            tracker.update_state(beta, sample_weight=weights)
        return self.get_metrics_result()


def estimate_head_alpha(target, head, data, *, base_sampler="random", batch_size=16):
    """Teacher-forced acceptance rate of `head` as a draft for `target`.

    The mean over positions t with a real next token of sum_x min(p, q),
    p the target's and q the head's base-sampler-adjusted distributions for
    x_{t+1}: at step 1 (head fed the target's true h_{t-1}) and at step 2
    (fed its own estimate h^_{t-1}).

    Args:
        target, head: the target and its `DraftHead`.
        data: dict of ``token_ids`` and ``padding_mask`` `(num, length)`.
        base_sampler: a KerasHub sampler (or name) standing for the decoding
            distribution: "random" (T = 1) by default, "greedy" for argmax
            agreement.
        batch_size: rows per forward pass.

    Returns:
        `(alpha_step1, alpha_step2)` floats.
    """
    from keras_specdec.rejection import get_base_sampler

    sampler = get_base_sampler(base_sampler)
    model = HeadDistillationModel(target, head)
    token_ids = np.asarray(data["token_ids"])
    padding_mask = np.asarray(data["padding_mask"]).astype(bool)
    totals, count = [0.0, 0.0], 0
    trainable = target.trainable
    try:
        for start in range(0, len(token_ids), batch_size):
            batch = {
                "token_ids": token_ids[start : start + batch_size],
                "padding_mask": padding_mask[start : start + batch_size],
            }
            out = keras.Model.predict_on_batch(model, batch)
            mask = np.asarray(_position_mask(batch["padding_mask"]))
            p = rejection.adjusted_probabilities(out["target_logits"], sampler)
            for i, key in enumerate(("head_logits", "head_logits_2")):
                q = rejection.adjusted_probabilities(out[key], sampler)
                beta = np.asarray(ops.sum(ops.minimum(p, q), axis=-1))
                totals[i] += float(beta[mask].sum(dtype=np.float64))
            count += int(mask.sum())
    finally:
        target.trainable = trainable
    if not count:
        raise ValueError(
            "estimate_head_alpha found no position with a real next token: "
            "each row needs at least two real tokens (padding_mask True)."
        )
    return totals[0] / count, totals[1] / count


def distill_head(
    target,
    head,
    dataset,
    *,
    epochs=1,
    steps_per_epoch=None,
    batch_size=16,
    learning_rate=1e-3,
    optimizer=None,
    temperature=1.0,
    feature_weight=1.0,
    kl_weight=1.0,
    step2_weight=0.5,
    feature_noise=0.0,
    held_out=None,
    callbacks=None,
    verbose="auto",
):
    """Train `head` (a `DraftHead`) on the frozen `target` with Keras `fit`.

    Args:
        target: the KerasHub causal LM the head drafts for (frozen; its
            `trainable` flag is restored afterwards).
        head: a `DraftHead`, e.g. `DraftHead.from_target(target)`.
        dataset: dict of ``token_ids`` / ``padding_mask`` arrays
            `(num, length)`, or a `tf.data.Dataset` / `PyDataset` of such
            dicts in batches.
        epochs, steps_per_epoch: as for `fit` (many short epochs make a
            `BackupAndRestore` run resume close to where it stopped).
        batch_size: rows per step for dict datasets and alpha estimates.
        learning_rate: a float or a `keras.optimizers.schedules` schedule
            for the default AdamW (gradient clipping 1.0).
        optimizer: a Keras optimizer instead of the default.
        temperature, feature_weight, kl_weight, step2_weight, feature_noise:
            see `HeadDistillationModel`.
        held_out: dict like `dataset` to report alpha on before and after
            (`estimate_head_alpha` at temperature `temperature`); None skips.
        callbacks: Keras callbacks, e.g.
            `keras.callbacks.BackupAndRestore(dir)` to resume by calling
            `distill_head` again with the same arguments.
        verbose: as for `fit`.

    Returns:
        `HeadDistillResult(history, alpha_before, alpha_after,
        alpha2_before, alpha2_after)`.

    Example:

    ```python
    import keras, keras_specdec
    from keras_specdec import heads, head_distill
    target, _ = keras_specdec.pairs.load("code")
    head = heads.DraftHead.from_target(target)
    result = head_distill.distill_head(
        target, head, {"token_ids": ids, "padding_mask": ids > 0},
        held_out=held_out, epochs=100, steps_per_epoch=50,
        callbacks=[keras.callbacks.BackupAndRestore("/tmp/head_backup")],
    )
    head.save_to_preset("my_head")
    ```
    """
    if not isinstance(head, heads.DraftHead):
        raise ValueError(
            f"distill_head trains a keras_specdec.heads.DraftHead, got "
            f"{type(head).__name__}; build one with DraftHead.from_target(target)."
        )
    head.check_weights()
    vocab = int(target.backbone.vocabulary_size)
    if (
        vocab != head.vocabulary_size
        or int(target.backbone.hidden_dim) != head.hidden_dim
    ):
        raise ValueError(
            f"The head (vocabulary {head.vocabulary_size}, hidden "
            f"{head.hidden_dim}) does not match the target (vocabulary {vocab}, "
            f"hidden {target.backbone.hidden_dim}); build it with "
            "DraftHead.from_target(target)."
        )
    sampler = rejection_sampler(temperature)

    def alpha():
        if held_out is None:
            return None, None
        return estimate_head_alpha(
            target, head, held_out, base_sampler=sampler, batch_size=batch_size
        )

    trainable = target.trainable
    try:
        alpha_before = alpha()
        model = HeadDistillationModel(
            target,
            head,
            temperature=temperature,
            feature_weight=feature_weight,
            kl_weight=kl_weight,
            step2_weight=step2_weight,
            feature_noise=feature_noise,
        )
        model.compile(
            optimizer=optimizer
            or keras.optimizers.AdamW(learning_rate, global_clipnorm=1.0)
        )
        if isinstance(dataset, dict):
            dataset = {
                "token_ids": np.asarray(dataset["token_ids"]),
                "padding_mask": np.asarray(dataset["padding_mask"]),
            }
            history = model.fit(
                dataset,
                batch_size=batch_size,
                epochs=epochs,
                steps_per_epoch=steps_per_epoch,
                callbacks=callbacks,
                verbose=verbose,
            )
        else:
            history = model.fit(
                dataset,
                epochs=epochs,
                steps_per_epoch=steps_per_epoch,
                callbacks=callbacks,
                verbose=verbose,
            )
        alpha_after = alpha()
    finally:
        target.trainable = trainable
    return HeadDistillResult(
        history, alpha_before[0], alpha_after[0], alpha_before[1], alpha_after[1]
    )
