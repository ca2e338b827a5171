"""Distil a draft towards its target (DistillSpec-style).

Speculative decoding is fast when the draft's next-token distribution q is
close to the target's p: the acceptance rate is alpha = E[sum_x min(p(x),
q(x))] = 1 - E[TV(p, q)] (Leviathan et al., 2023, Corollary 3.6). A draft
trained on data alone learns the data, not the target; DistillSpec (Zhou et
al., 2024) trains the draft on the *target's* next-token distributions, at
the temperature the sampler will use, on data the user gives or on the
target's own generations. That is what `distill_draft` does, with Keras
`fit` (progress bar, callbacks, `BackupAndRestore` / `ModelCheckpoint` for
resumable runs), for causal LMs (`keras_hub.models.CausalLM`) and
encoder-decoders (`keras_hub.models.Seq2SeqLM`: T5, BART).

The loss at each decoder position is a divergence between p_T =
softmax(target_logits / T) (the frozen target, computed without gradient)
and q_T = softmax(draft_logits / T):

- ``"forward_kl"``: KL(p_T || q_T) = sum_x p_T(x) log(p_T(x) / q_T(x)), the
  distillation cross-entropy (DistillSpec's FKL); mass-covering.
- ``"tvd"``: TV(p_T, q_T) = 1/2 sum_x |p_T(x) - q_T(x)| = 1 - beta: exactly
  one minus the acceptance rate, the quantity speculative decoding pays for.
- ``"reverse_kl"``: KL(q_T || p_T), mode-seeking.

At ``temperature=0`` (greedy decoding) p is the one-hot argmax of the
target; the draft fits it with cross-entropy (``"forward_kl"``) or 1 -
q(argmax) (``"tvd"``), its own distribution taken at temperature 1.

Positions count where both the position and the next one are real tokens
(the padding mask), as in `keras_specdec.analysis.estimate_alpha`.
"""

import collections

import keras
import numpy as np
from keras import ops

from keras_specdec import measure, model_utils, rejection

DIVERGENCES = ("forward_kl", "tvd", "reverse_kl")

DistillResult = collections.namedtuple(
    "DistillResult", ["history", "alpha_before", "alpha_after"]
)
DistillResult.__doc__ = """What `distill_draft` returns.

- history: the `keras.callbacks.History` of `fit`.
- alpha_before, alpha_after: `keras_specdec.analysis.estimate_alpha` on
  `held_out` before and after training (None without `held_out`).
"""


def _input_keys(model):
    if model_utils.is_seq2seq(model):
        return (
            "encoder_token_ids",
            "encoder_padding_mask",
            "decoder_token_ids",
            "decoder_padding_mask",
        )
    return ("token_ids", "padding_mask")


def _mask_key(model):
    return "decoder_padding_mask" if model_utils.is_seq2seq(model) else "padding_mask"


def _position_mask(padding_mask):
    """`(batch, length)` bool: the prediction at position t (for token t + 1)
    counts where positions t and t + 1 are both real tokens."""
    padding_mask = ops.cast(padding_mask, "bool")
    both = ops.logical_and(padding_mask[:, :-1], padding_mask[:, 1:])
    return ops.pad(both, [[0, 0], [0, 1]], constant_values=False)


# The base sampler a temperature stands for (greedy at 0, random sampling at
# T otherwise): one function for the package, `rejection.base_sampler_for`.
base_sampler_for = rejection.base_sampler_for
rejection_sampler = rejection.base_sampler_for  # the earlier name, kept


def divergence(target_logits, draft_logits, *, temperature=1.0, kind="forward_kl"):
    """Per-position divergence between the target's and the draft's
    next-token distributions at `temperature` (see the module docstring).

    Args:
        target_logits: float `(..., vocab)`.
        draft_logits: float `(..., vocab)`.
        temperature: float >= 0; 0 stands for greedy decoding (p one-hot).
        kind: one of "forward_kl", "tvd", "reverse_kl".

    Returns:
        float32 `(...)`.

    >>> p = np.log(np.array([[0.5, 0.5, 1e-9]], "float32"))
    >>> q = np.log(np.array([[0.25, 0.25, 0.5]], "float32"))
    >>> round(float(divergence(p, q, kind="tvd")[0]), 4)  # 1 - beta
    0.5
    >>> round(float(divergence(p, q, kind="forward_kl")[0]), 4)  # log 2
    0.6931
    """
    target_logits = ops.cast(target_logits, "float32")
    draft_logits = ops.cast(draft_logits, "float32")
    vocab_size = ops.shape(target_logits)[-1]
    if temperature == 0:
        # Greedy: p is the target's argmax; the draft at temperature 1.
        label = ops.argmax(target_logits, axis=-1)
        log_q = ops.log_softmax(draft_logits, axis=-1)
        log_q_label = ops.sum(log_q * ops.one_hot(label, vocab_size), axis=-1)
        if kind == "forward_kl":
            return -log_q_label
        if kind == "tvd":
            return 1.0 - ops.exp(log_q_label)
        raise ValueError(
            f"divergence {kind!r} is not defined at temperature 0 (the target's "
            "distribution is one-hot, so KL(q || p) is infinite): use "
            "'forward_kl' or 'tvd', or a temperature > 0."
        )
    log_p = ops.log_softmax(target_logits / temperature, axis=-1)
    log_q = ops.log_softmax(draft_logits / temperature, axis=-1)
    p, q = ops.exp(log_p), ops.exp(log_q)
    if kind == "forward_kl":
        return ops.sum(p * (log_p - log_q), axis=-1)
    if kind == "reverse_kl":
        return ops.sum(q * (log_q - log_p), axis=-1)
    if kind == "tvd":
        return 0.5 * ops.sum(ops.abs(p - q), axis=-1)
    raise ValueError(f"`divergence` must be one of {DIVERGENCES}, got {kind!r}.")


class DistillationModel(keras.Model):
    """A Keras model that trains `draft` towards the frozen `target`.

    `call(x)` runs both models on the same inputs (the target without
    gradient, in inference mode) and returns both logits; `compute_loss` is
    the masked mean of `divergence(target, draft)`. Train it with `fit(x)`
    (no labels); only the draft's weights are trainable. Its metric
    ``acceptance`` is the mean sum_x min(p(x), q(x)) over the training
    batches (at temperature 0: the argmax agreement), the acceptance rate
    alpha that speculative decoding would see on these inputs.

    `distill_draft` builds, compiles and fits one; use this class directly
    for full control of `compile` and `fit`. It sets `target.trainable =
    False` (`distill_draft` restores the flag afterwards).
    """

    def __init__(
        self, target, draft, *, temperature=1.0, divergence="forward_kl", **kwargs
    ):
        super().__init__(**kwargs)
        _check_pair(target, draft, temperature, divergence)
        self.target = target
        self.draft = draft
        self.temperature = float(temperature)
        self.divergence = divergence
        self.target.trainable = False
        self.acceptance_tracker = keras.metrics.Mean(name="acceptance")

    def call(self, inputs, training=False):
        keys = _input_keys(self.draft)
        inputs = {k: inputs[k] for k in keys}
        target_logits = ops.stop_gradient(self.target(inputs, training=False))
        draft_logits = self.draft(inputs, training=training)
        # (batch, length, vocab) each.
        return {"target_logits": target_logits, "draft_logits": draft_logits}

    def _weights(self, x):
        return ops.cast(_position_mask(x[_mask_key(self.draft)]), "float32")

    def compute_loss(
        self, x=None, y=None, y_pred=None, sample_weight=None, training=True
    ):
        per_position = divergence(
            y_pred["target_logits"],
            y_pred["draft_logits"],
            temperature=self.temperature,
            kind=self.divergence,
        )  # (batch, length)
        weights = self._weights(x)
        loss = ops.sum(per_position * weights) / ops.maximum(ops.sum(weights), 1.0)
        losses = self.losses  # regularisers of the draft, if any
        if losses:
            loss = loss + ops.sum(losses)
        return loss

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        sampler = base_sampler_for(self.temperature)
        p = rejection.adjusted_probabilities(y_pred["target_logits"], sampler)
        q = rejection.adjusted_probabilities(y_pred["draft_logits"], sampler)
        beta = ops.sum(ops.minimum(p, q), axis=-1)  # (batch, length)
        self.acceptance_tracker.update_state(beta, sample_weight=self._weights(x))
        return self.get_metrics_result()


def _check_pair(target, draft, temperature, kind):
    import keras_hub

    for role, model in (("target", target), ("draft", draft)):
        if not isinstance(
            model, (keras_hub.models.CausalLM, keras_hub.models.Seq2SeqLM)
        ):
            raise ValueError(
                f"The {role} must be a KerasHub CausalLM or Seq2SeqLM to "
                f"distil, got `{type(model).__name__}` (model-free drafts "
                "such as PromptLookupDraft have nothing to train)."
            )
    if model_utils.is_seq2seq(target) != model_utils.is_seq2seq(draft):
        raise ValueError(
            "The target and draft must both be causal LMs or both "
            f"encoder-decoders; got `{type(target).__name__}` and "
            f"`{type(draft).__name__}`."
        )
    sizes = [m.backbone.vocabulary_size for m in (target, draft)]
    if sizes[0] != sizes[1]:
        raise ValueError(
            f"The target's vocabulary ({sizes[0]} tokens) and the draft's "
            f"({sizes[1]}) differ: distillation matches distributions over "
            "one shared vocabulary; use a draft with the target's tokenizer."
        )
    if temperature is None or temperature < 0:
        raise ValueError(f"`temperature` must be >= 0 (0 = greedy), got {temperature}.")
    if kind not in DIVERGENCES:
        raise ValueError(f"`divergence` must be one of {DIVERGENCES}, got {kind!r}.")
    if temperature == 0 and kind == "reverse_kl":
        raise ValueError(
            "divergence 'reverse_kl' is not defined at temperature 0 (the "
            "target's distribution is one-hot): use 'forward_kl' or 'tvd'."
        )


def _check_inputs(model, inputs, name):
    keys = _input_keys(model)
    if not isinstance(inputs, dict):
        return  # a tf.data.Dataset / PyDataset / generator: Keras checks it
    missing = [k for k in keys if k not in inputs]
    if missing:
        kind = "Seq2SeqLM" if model_utils.is_seq2seq(model) else "CausalLM"
        raise ValueError(
            f"`{name}` is missing {missing}: a "
            f"{kind} pair takes a "
            f"dict of token arrays with keys {list(keys)} (use "
            "`target_generations` or the preprocessor's `generate_preprocess` "
            "to make them from text)."
        )
    lengths = {k: np.shape(inputs[k]) for k in keys}
    if len({shape[0] for shape in lengths.values()}) != 1:
        raise ValueError(f"`{name}` arrays differ in batch size: {lengths}.")


def target_generations(
    target, prompts, *, max_length=None, batch_size=16, stop_token_ids="auto"
):
    """The target's own outputs on `prompts`, as token arrays for
    `distill_draft` (training on-policy data: the sequences the target
    produces, whose prefixes speculative decoding will see).

    Uses `target.generate` with the sampler `target` was compiled with
    (`target.compile(sampler="random")` for samples at temperature 1,
    `"greedy"` for its greedy outputs).

    Args:
        target: the KerasHub CausalLM or Seq2SeqLM.
        prompts: a list of strings (tokenised with `target.preprocessor`'s
            `generate_preprocess`) or a dict of token arrays as `generate`
            takes them without a preprocessor.
        max_length: the sequence length to generate to (decoder length for
            encoder-decoders); with string prompts, default the
            preprocessor's sequence length.
        batch_size: rows per `generate` call.
        stop_token_ids: as for `generate`.

    Returns:
        dict of numpy arrays, the `generate` outputs with the encoder
        inputs (encoder-decoders) added back.
    """
    preprocessor = target.preprocessor
    if not isinstance(prompts, dict):
        if preprocessor is None:
            raise ValueError(
                "String `prompts` need `target.preprocessor` to tokenise them; "
                "pass a dict of token arrays instead."
            )
        prompts = list(prompts)
        if model_utils.is_seq2seq(target) and max_length is not None:
            preprocessor.decoder_sequence_length = max_length
        tokens = [
            preprocessor.generate_preprocess(
                prompts[i : i + batch_size],
                **(
                    {}
                    if model_utils.is_seq2seq(target)
                    else {"sequence_length": max_length}
                ),
            )
            for i in range(0, len(prompts), batch_size)
        ]
        prompts = {
            k: np.concatenate([np.asarray(t[k]) for t in tokens]) for k in tokens[0]
        }
    outputs = collections.defaultdict(list)
    target.preprocessor = None
    try:
        first = next(iter(prompts.values()))
        for start in range(0, len(first), batch_size):
            batch = {
                k: np.asarray(v[start : start + batch_size]) for k, v in prompts.items()
            }
            out = target.generate(
                batch, stop_token_ids=_stop_ids(target, preprocessor, stop_token_ids)
            )
            for k, v in out.items():
                outputs[k].append(np.asarray(v))
            if model_utils.is_seq2seq(target):
                for k in ("encoder_token_ids", "encoder_padding_mask"):
                    outputs[k].append(batch[k])
    finally:
        target.preprocessor = preprocessor
    return {k: np.concatenate(v) for k, v in outputs.items()}


def _stop_ids(target, preprocessor, stop_token_ids):
    if stop_token_ids != "auto":
        return stop_token_ids
    tokenizer = getattr(preprocessor, "tokenizer", None)
    end = getattr(tokenizer, "end_token_id", None)
    return None if end is None else [end]


def distill_draft(
    target,
    draft,
    dataset,
    *,
    epochs=1,
    temperature=1.0,
    divergence="forward_kl",
    held_out=None,
    batch_size=16,
    optimizer=None,
    learning_rate=1e-3,
    callbacks=None,
    steps_per_epoch=None,
    alpha_base_sampler=None,
    shuffle=True,
    verbose="auto",
):
    """Train `draft` to match `target`'s next-token distributions.

    The draft's weights are updated in place; the target is frozen (its
    weights are unchanged; its `trainable` flag is restored afterwards).
    Before and after training, alpha is estimated on `held_out` with
    `keras_specdec.analysis.estimate_alpha` (teacher forcing, in batches of
    `batch_size` rows) at the base sampler the temperature
    stands for (greedy at 0, random sampling at temperature T otherwise).

    Args:
        target: a KerasHub `CausalLM` or `Seq2SeqLM` (the model that will
            verify).
        draft: a KerasHub model of the same kind, with the same vocabulary.
        dataset: token data: a dict of arrays, for a CausalLM ``token_ids``,
            ``padding_mask`` `(num, length)`; for a Seq2SeqLM
            ``encoder_token_ids``, ``encoder_padding_mask``,
            ``decoder_token_ids``, ``decoder_padding_mask`` (the decoder
            sequence starts with the start token) -- text the user gives,
            tokenised, or the target's own outputs (`target_generations`);
            or a `tf.data.Dataset` / `keras.utils.PyDataset` yielding such
            dicts in batches.
        epochs: passes over `dataset`.
        temperature: the sampling temperature speculative decoding will use
            (0 = greedy); the divergence compares softmax(logits / T).
        divergence: "forward_kl" (default), "tvd" (1 - acceptance rate) or
            "reverse_kl".
        held_out: inputs like `dataset` (a dict of arrays) to report alpha
            on, before and after; None to skip.
        batch_size: rows per step for dict `dataset`s, and per forward pass
            of the alpha estimate on `held_out`.
        optimizer: a Keras optimizer; default AdamW(learning_rate) with
            gradient clipping.
        learning_rate: for the default optimizer.
        callbacks: Keras callbacks for `fit`, e.g.
            `keras.callbacks.BackupAndRestore(dir)` to resume an interrupted
            run by calling `distill_draft` again with the same arguments.
        steps_per_epoch: as for `fit`.
        alpha_base_sampler: the base sampler for the alpha report (default
            from `temperature`).
        shuffle: shuffle a dict `dataset` every epoch (as `fit` does).
        verbose: as for `fit`.

    Returns:
        `DistillResult(history, alpha_before, alpha_after)`.

    Example:

    ```python
    import keras, keras_hub, keras_specdec
    target, draft = keras_specdec.pairs.load("code")
    prompts = keras_specdec.pairs.benchmark_prompts("code")
    target.compile(sampler="random")
    data = keras_specdec.distill.target_generations(
        target, prompts[:64], max_length=256
    )
    held_out = keras_specdec.distill.target_generations(
        target, prompts[64:], max_length=256
    )
    result = keras_specdec.distill.distill_draft(
        target, draft, data, held_out=held_out, epochs=2, temperature=1.0,
        callbacks=[keras.callbacks.BackupAndRestore("/tmp/distill_backup")],
    )
    print(result.alpha_before, "->", result.alpha_after)
    target.compile(
        sampler=keras_specdec.SpeculativeSampler(draft=draft, base_sampler="random")
    )
    ```
    """
    _check_pair(target, draft, temperature, divergence)
    _check_inputs(target, dataset, "dataset")
    if held_out is not None:
        _check_inputs(target, held_out, "held_out")
    sampler = alpha_base_sampler or base_sampler_for(temperature)

    def alpha():
        if held_out is None:
            return None
        return measure.estimate_alpha(
            target, draft, held_out, base_sampler=sampler, batch_size=batch_size
        )

    target_trainable = target.trainable
    try:
        alpha_before = alpha()
        model = DistillationModel(
            target, draft, temperature=temperature, divergence=divergence
        )
        model.compile(
            optimizer=optimizer
            or keras.optimizers.AdamW(learning_rate, global_clipnorm=1.0),
        )
        arrays = {}  # batching and shuffling: Keras's for arrays only
        if isinstance(dataset, dict):
            keys = _input_keys(draft)
            dataset = {k: np.asarray(dataset[k]) for k in keys}
            arrays = {"batch_size": batch_size, "shuffle": shuffle}
        history = model.fit(
            dataset,
            epochs=epochs,
            callbacks=callbacks,
            steps_per_epoch=steps_per_epoch,
            verbose=verbose,
            **arrays,
        )
        alpha_after = alpha()
    finally:
        target.trainable = target_trainable
    return DistillResult(history, alpha_before, alpha_after)
