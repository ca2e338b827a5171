"""The paper's theory as small pure functions (Leviathan et al., 2023, §3).

alpha is the expected acceptance rate E[beta], beta = sum_x min(p(x), q(x));
gamma the number of draft tokens per round; c the cost of one draft step
relative to one target step.

>>> round(expected_tokens_per_step(0.8, 4), 4)
3.3616
>>> round(expected_speedup(0.8, 4, 0.05), 4)
2.8013
"""

import time
import warnings

import numpy as np


def acceptance_rate(target_probs, draft_probs, *, per_position=False):
    """beta = sum_x min(p(x), q(x)) per position (Theorem 3.5, Corollary 3.6).

    Args:
        target_probs, draft_probs: arrays `(..., vocab)`, p and q.
        per_position: return beta at every position instead of its mean alpha.

    >>> p = np.array([[0.5, 0.5, 0.0], [1.0, 0.0, 0.0]])
    >>> q = np.array([[0.25, 0.25, 0.5], [1.0, 0.0, 0.0]])
    >>> acceptance_rate(p, q, per_position=True).tolist()
    [0.5, 1.0]
    >>> float(acceptance_rate(p, q))
    0.75
    """
    beta = np.minimum(np.asarray(target_probs), np.asarray(draft_probs)).sum(-1)
    return beta if per_position else float(np.mean(beta))


def expected_tokens_per_step(alpha, gamma):
    """(1 - alpha^(gamma+1)) / (1 - alpha): tokens per target call (Eq. 1).

    >>> expected_tokens_per_step(1.0, 4)
    5.0
    >>> expected_tokens_per_step(0.0, 4)
    1.0
    """
    if isinstance(alpha, (int, float, np.number)) and alpha >= 1.0:
        return float(gamma + 1)
    # Tensors (the sampler's schedule, inside the compiled loop) pass alpha < 1.
    return (1.0 - alpha ** (gamma + 1)) / (1.0 - alpha)


def expected_speedup(alpha, gamma, c):
    """Theorem 3.8: expected walltime improvement factor
    (1 - alpha^(gamma+1)) / ((1 - alpha)(gamma c + 1)).

    >>> round(expected_speedup(0.0, 3, 0.1), 4)  # nothing accepted: a slowdown
    0.7692
    """
    return expected_tokens_per_step(alpha, gamma) / (gamma * c + 1.0)


def optimal_num_speculative_tokens(alpha, c, *, max_gamma=32):
    """The gamma in 1..max_gamma that maximises Theorem 3.8.

    >>> optimal_num_speculative_tokens(0.8, 0.05)
    8
    >>> optimal_num_speculative_tokens(0.9, 0.01)
    24
    """
    gammas = range(1, max_gamma + 1)
    return max(gammas, key=lambda g: expected_speedup(alpha, g, c))


def expected_ops_increase(alpha, gamma, c_hat):
    """Theorem 3.11: expected factor of arithmetic operations,
    (1 - alpha)(gamma c_hat + gamma + 1) / (1 - alpha^(gamma+1)),
    where c_hat is the draft's operations per token relative to the target's.

    >>> round(expected_ops_increase(0.8, 4, 0.0), 4)
    1.4874
    """
    return (gamma * c_hat + gamma + 1.0) / expected_tokens_per_step(alpha, gamma)


def speedup_lower_bound(alpha, c):
    """Corollary 3.9: if alpha > c there is a gamma (gamma = 1 suffices) with
    improvement >= (1 + alpha) / (1 + c); returns None when alpha <= c.

    >>> round(speedup_lower_bound(0.7, 0.1), 4)
    1.5455
    >>> speedup_lower_bound(0.1, 0.2) is None
    True
    """
    if alpha <= c:
        return None
    return (1.0 + alpha) / (1.0 + c)


def _wait_for(result):
    """Block until `result`'s arrays are computed (JAX dispatches
    asynchronously: without this a timer would stop before the work ends)."""
    try:
        import jax
    except ImportError:  # other backends compute eagerly
        return result
    return jax.block_until_ready(result)


def timed_call(fn):
    """`(result, seconds)` of one call of `fn()`, waiting for its arrays.
    The first call of a compiled function: its compile time included."""
    start = time.perf_counter()
    result = _wait_for(fn())
    return result, time.perf_counter() - start


def median_seconds(fns, repetitions, *, warmup=1, divide_by=1):
    """Median wall-clock seconds of a call, the one timing loop of this
    project (demo, examples, scripts, `measure_step_seconds`).

    Each callable is first called `warmup` times untimed (compilation), then
    `repetitions` times timed. With several callables every repetition times
    each in turn, starting at a different one each time, so that drift of a
    busy machine's speed moves them together instead of biasing their ratio.
    Arrays in a call's result are waited for before its clock stops.

    Args:
        fns: a callable, or a dict `{name: callable}` or list of callables.
        repetitions: timed calls of each callable (>= 1).
        warmup: untimed calls of each callable before timing.
        divide_by: divide each call's seconds by this (e.g. the number of
            steps one call runs, for seconds per step).

    Returns:
        A float for one callable; else a dict or list of floats, like `fns`.

    >>> seconds = median_seconds(lambda: sum(range(1000)), 5)
    >>> 0 < seconds < 1
    True
    >>> sorted(median_seconds({"a": lambda: 1, "b": lambda: 2}, 3))
    ['a', 'b']
    """
    if isinstance(repetitions, bool) or int(repetitions) != repetitions:
        raise ValueError(f"`repetitions` must be an int >= 1, got {repetitions!r}.")
    if repetitions < 1:
        raise ValueError(
            f"`repetitions` must be >= 1 (a median needs at least one timed "
            f"call), got {repetitions}."
        )
    if callable(fns):
        return median_seconds([fns], repetitions, warmup=warmup, divide_by=divide_by)[0]
    keys = list(fns) if isinstance(fns, dict) else list(range(len(fns)))
    calls = [fns[k] for k in keys]
    for call in calls:
        for _ in range(warmup):
            _wait_for(call())
    times = [[] for _ in calls]
    for repetition in range(int(repetitions)):
        for k in range(len(calls)):
            i = (k + repetition) % len(calls)
            times[i].append(timed_call(calls[i])[1] / divide_by)
    medians = [float(np.median(t)) for t in times]
    return dict(zip(keys, medians)) if isinstance(fns, dict) else medians


def measure_step_seconds(
    model,
    chunk_sizes=(1,),
    *,
    batch_size=1,
    max_length=128,
    repetitions=20,
    steps_per_call=16,
):
    """Median seconds of one cached decoding call per chunk size.

    Each call is `call_with_cache` (or `call_decoder_with_cache`) on a chunk
    of `chunk_sizes[i]` tokens at the middle of a `max_length` cache. Chunk
    size 1 is a draft or target step; chunk size gamma + 1 is a verification
    pass. Calls are timed the way `generate()` runs them, inside one compiled
    loop: a jitted `fori_loop` of `steps_per_call` calls (each feeding the
    previous call's cache) is timed and divided, so the per-dispatch cost of
    a jitted function with many weight arguments (which `generate()` pays
    once, not per step) does not inflate small models' steps. Chunk sizes are
    timed in turn within each repetition, so drift on a busy machine moves
    them together; compilation is excluded.
    """
    import jax
    import keras
    from keras import ops

    from keras_specdec import model_utils, models

    token_ids = np.ones((batch_size, max_length), "int32")
    padding_mask = np.ones((batch_size, max_length), bool)
    token = model_utils._GENERATE_INPUTS.set(
        {"encoder_token_ids": token_ids, "encoder_padding_mask": padding_mask}
    )
    try:
        adapter = models.adapt(model)
        state = adapter.init_state(token_ids, padding_mask)
    finally:
        model_utils._GENERATE_INPUTS.reset(token)
    variables = [v.value for v in model.weights]

    @jax.jit
    def steps(variables, state, chunk, index):
        with keras.StatelessScope(state_mapping=zip(model.weights, variables)):

            def one(i, carry):
                state, total = carry
                logits, _, state = adapter.decode(state, chunk, index)
                # Depend on every call's logits so none is optimised away.
                return state, total + ops.sum(ops.cast(logits[:, -1, :1], "float32"))

            return jax.lax.fori_loop(
                0, steps_per_call, one, (state, ops.zeros((), "float32"))
            )

    index = ops.convert_to_tensor(max_length // 2, "int32")
    chunks = {size: ops.ones((batch_size, size), "int32") for size in chunk_sizes}

    def call(size):
        return lambda: steps(variables, state, chunks[size], index)

    # Warm-up: compile, then one more call per size.
    return median_seconds(
        {size: call(size) for size in chunk_sizes},
        repetitions,
        warmup=2,
        divide_by=steps_per_call,
    )


def measure_cost_coefficient(target, draft, **kwargs):
    """c = time(one draft step) / time(one target step), measured here with
    `measure_step_seconds` (same keyword arguments); a ratio of medians."""
    draft_seconds = measure_step_seconds(draft, (1,), **kwargs)[1]
    return draft_seconds / measure_step_seconds(target, (1,), **kwargs)[1]


def measure_verify_costs(target, gammas, **kwargs):
    """`{gamma: v}`, v = time(one pass of gamma + 1 tokens) / time(one
    target step), measured here with `measure_step_seconds` (same keyword
    arguments): what `SpeculativeSampler(verify_costs=...)` takes. About 1 on
    accelerators for large models; larger on CPUs and for small models."""
    gammas = sorted({int(g) for g in gammas})
    seconds = measure_step_seconds(target, [1] + [g + 1 for g in gammas], **kwargs)
    return {g: seconds[g + 1] / seconds[1] for g in gammas}


def expected_speedup_with_verify_cost(alpha, gamma, c, verify_cost):
    """Theorem 3.8 without its assumption that scoring gamma + 1 tokens costs
    one target step: `verify_cost` = time(gamma + 1 token pass) / time(one
    token step), measured. On accelerators it is ~1 (the paper's setting); on
    CPUs, where a step is compute-bound, it is larger.

    >>> free = expected_speedup_with_verify_cost(0.8, 4, 0.05, 1.0)
    >>> free == expected_speedup(0.8, 4, 0.05)
    True
    >>> round(expected_speedup_with_verify_cost(0.8, 4, 0.05, 2.0), 4)
    1.528
    """
    return expected_tokens_per_step(alpha, gamma) / (gamma * c + verify_cost)


_CAUSAL_KEYS = ("token_ids", "padding_mask")
_SEQ2SEQ_KEYS = (
    "encoder_token_ids",
    "encoder_padding_mask",
    "decoder_token_ids",
    "decoder_padding_mask",
)
_ESTIMATE_ALPHA_TAKES = (
    "estimate_alpha takes text the target can be teacher-forced on: for a "
    "causal LM, strings (with a preprocessor attached to the target) or a dict "
    "of `token_ids` and `padding_mask` `(batch, length)`; for a seq2seq LM, a "
    "dict of `encoder_text` and `decoder_text` strings (the decoder side is "
    "needed: alpha is measured on the decoder's tokens) or of "
    "`encoder_token_ids`, `encoder_padding_mask`, `decoder_token_ids` and "
    "`decoder_padding_mask`."
)


def _is_seq2seq(model):
    import keras_hub

    return isinstance(model, keras_hub.models.Seq2SeqLM)


def _is_text(value):
    if isinstance(value, (str, bytes)):
        return True
    if isinstance(value, (list, tuple)):
        return len(value) > 0 and all(isinstance(v, (str, bytes)) for v in value)
    dtype = getattr(value, "dtype", None)
    if dtype is not None and getattr(dtype, "name", str(dtype)) == "string":
        return True  # a tf.string tensor
    return isinstance(value, np.ndarray) and value.dtype.kind in "USO"


def _teacher_forcing_inputs(target, inputs, sequence_length):
    """`(model inputs, mask)`: token inputs for one forward pass from what
    `generate()` accepts, and `(batch, length)` bool: True where the
    prediction at a position is for a real next token."""
    import keras

    seq2seq = _is_seq2seq(target)
    keys = _SEQ2SEQ_KEYS if seq2seq else _CAUSAL_KEYS
    text = _is_text(inputs) or (
        isinstance(inputs, dict)
        and bool(inputs)
        and all(_is_text(v) for v in inputs.values())
    )
    if text:
        if target.preprocessor is None:
            raise ValueError(
                "estimate_alpha got text, but the target has no preprocessor to "
                "tokenize it: attach one (e.g. the preset's) or pass token ids. "
                + _ESTIMATE_ALPHA_TAKES
            )
        if seq2seq and not (
            isinstance(inputs, dict) and {"encoder_text", "decoder_text"} <= set(inputs)
        ):
            raise ValueError(
                "estimate_alpha with a seq2seq target needs the decoder side "
                "too: pass {'encoder_text': sources, 'decoder_text': "
                "references}. " + _ESTIMATE_ALPHA_TAKES
            )
        if isinstance(inputs, (str, bytes)):
            inputs = [inputs]
        if isinstance(inputs, dict):
            inputs = {
                k: [v] if isinstance(v, (str, bytes)) else v for k, v in inputs.items()
            }
        x, _, next_mask = keras.utils.unpack_x_y_sample_weight(
            target.preprocessor(inputs, sequence_length=sequence_length)
        )
        x = {k: np.asarray(x[k]) for k in keys}
        mask_key = "decoder_padding_mask" if seq2seq else "padding_mask"
        # The preprocessor's sample weight marks positions whose next token
        # is real (the last token of a full row included).
        return x, x[mask_key].astype(bool) & np.asarray(next_mask).astype(bool)
    if not isinstance(inputs, dict) or not set(keys) <= set(inputs):
        got = (
            f"a dict with keys {sorted(inputs)}"
            if isinstance(inputs, dict)
            else type(inputs).__name__
        )
        raise ValueError(f"estimate_alpha got {got}. " + _ESTIMATE_ALPHA_TAKES)
    x = {k: np.asarray(inputs[k]) for k in keys}
    if x[keys[0]].ndim == 1:  # one unbatched sequence, as generate() allows
        x = {k: v[None] for k, v in x.items()}
    shapes = {k: v.shape for k, v in x.items()}
    if len({shape[0] for shape in shapes.values()}) != 1:
        raise ValueError(
            f"estimate_alpha got arrays with different batch sizes: {shapes}; "
            "every array needs one row per sequence."
        )
    mask = x["decoder_padding_mask" if seq2seq else "padding_mask"].astype(bool)
    # The prediction at position t is for token t + 1: count it where both
    # positions are real tokens.
    next_mask = np.zeros_like(mask)
    next_mask[:, :-1] = mask[:, :-1] & mask[:, 1:]
    return x, next_mask


def estimate_alpha(
    target,
    draft,
    inputs,
    *,
    base_sampler="greedy",
    sequence_length=None,
    batch_size=16,
):
    """alpha from the two models' distributions on real text, without running
    speculative decoding: the mean over non-padding positions of
    sum_x min(p(x), q(x)), with p, q the base sampler's adjusted
    distributions given the true prefix (teacher forcing).

    The one alpha estimate of the package: `keras_specdec.distill` reports
    alpha before and after training with it.

    Args:
        target, draft: KerasHub causal LMs, or seq2seq LMs, sharing a
            vocabulary.
        inputs: what `generate()` takes, with the whole text: for a causal
            LM, strings (tokenized by the target's preprocessor, with its
            start and end tokens) or a dict of `token_ids` and `padding_mask`
            `(batch, length)`; for a seq2seq LM, a dict of `encoder_text` and
            `decoder_text` strings or of `encoder_token_ids`,
            `encoder_padding_mask`, `decoder_token_ids` and
            `decoder_padding_mask` (positions counted on the decoder mask).
        base_sampler: as for `SpeculativeSampler`.
        sequence_length: for strings, the length to pad or truncate to
            (decoder length for seq2seq); default the preprocessor's.
        batch_size: rows per forward pass (bounds the memory of the
            `(batch, length, vocab)` logits); None for all rows in one pass.
            The estimate does not depend on it (up to float round-off).
    """
    import keras

    from keras_specdec import rejection
    from keras_specdec.speculative_sampler import _get_base_sampler

    base_sampler = _get_base_sampler(base_sampler)
    if batch_size is not None and (int(batch_size) != batch_size or batch_size < 1):
        raise ValueError(
            f"estimate_alpha's batch_size must be a positive integer or None "
            f"(all rows in one pass), got {batch_size!r}."
        )
    if _is_seq2seq(target) != _is_seq2seq(draft):
        raise ValueError(
            "estimate_alpha needs a target and a draft of the same kind (both "
            f"causal or both seq2seq), got {type(target).__name__} and "
            f"{type(draft).__name__}."
        )
    x, mask = _teacher_forcing_inputs(target, inputs, sequence_length)
    if not mask.any():
        raise ValueError(
            "estimate_alpha found no position with a real next token: each "
            "row needs at least two real tokens (padding_mask True)."
        )
    num_rows = len(mask)
    batch_size = num_rows if batch_size is None else int(batch_size)
    total, count = 0.0, 0
    for start in range(0, num_rows, batch_size):
        batch_mask = mask[start : start + batch_size]  # (batch, length)
        if not batch_mask.any():
            continue  # nothing counted in these rows
        batch = {k: v[start : start + batch_size] for k, v in x.items()}
        with warnings.catch_warnings():
            # Keras warns that T5's attention layers "destroy the mask" of
            # the embeddings; T5 reads the padding masks from its inputs.
            warnings.filterwarnings(
                "ignore",
                message=".*will therefore destroy the mask",
                category=UserWarning,
            )
            # keras.Model's predict_on_batch (one compiled forward pass) on
            # token ids: the KerasHub task's own would run an attached
            # preprocessor again. (batch, length, vocab)
            target_logits = keras.Model.predict_on_batch(target, batch)
            draft_logits = keras.Model.predict_on_batch(draft, batch)
        target_probs = rejection.adjusted_probabilities(target_logits, base_sampler)
        draft_probs = rejection.adjusted_probabilities(draft_logits, base_sampler)
        beta = acceptance_rate(
            np.asarray(target_probs), np.asarray(draft_probs), per_position=True
        )  # (batch, length)
        total += float(beta[batch_mask].sum(dtype=np.float64))
        count += int(batch_mask.sum())
    return total / count
