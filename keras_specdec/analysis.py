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

    from keras_specdec import model_utils

    token_ids = np.ones((batch_size, max_length), "int32")
    padding_mask = np.ones((batch_size, max_length), bool)
    token = model_utils._GENERATE_INPUTS.set(
        {"encoder_token_ids": token_ids, "encoder_padding_mask": padding_mask}
    )
    try:
        state = model_utils.init_state(model, token_ids, padding_mask)
    finally:
        model_utils._GENERATE_INPUTS.reset(token)
    variables = [v.value for v in model.weights]

    @jax.jit
    def steps(variables, state, chunk, index):
        with keras.StatelessScope(state_mapping=zip(model.weights, variables)):

            def one(i, carry):
                state, total = carry
                logits, state = model_utils.decode(model, state, chunk, index)
                # Depend on every call's logits so none is optimised away.
                return state, total + ops.sum(ops.cast(logits[:, -1, :1], "float32"))

            return jax.lax.fori_loop(
                0, steps_per_call, one, (state, ops.zeros((), "float32"))
            )

    index = ops.convert_to_tensor(max_length // 2, "int32")
    chunks = {size: ops.ones((batch_size, size), "int32") for size in chunk_sizes}

    def call(size):
        jax.block_until_ready(steps(variables, state, chunks[size], index))

    for size in chunk_sizes:  # compile and warm up
        call(size)
        call(size)
    times = {size: [] for size in chunk_sizes}
    for _ in range(repetitions):
        for size in chunk_sizes:
            start = time.perf_counter()
            call(size)
            times[size].append((time.perf_counter() - start) / steps_per_call)
    return {size: float(np.median(t)) for size, t in times.items()}


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


def estimate_alpha(target, draft, inputs, *, base_sampler="greedy"):
    """alpha from the two models' distributions on real text, without running
    speculative decoding: the mean over non-padding positions of
    sum_x min(p(x), q(x)), with p, q the base sampler's adjusted
    distributions given the true prefix (teacher forcing).

    Args:
        target, draft: KerasHub causal LMs sharing a vocabulary.
        inputs: dict with `token_ids` and `padding_mask` `(batch, length)`.
        base_sampler: as for `SpeculativeSampler`.
    """
    from keras_specdec import rejection
    from keras_specdec.speculative_sampler import _get_base_sampler

    base_sampler = _get_base_sampler(base_sampler)
    inputs = {k: np.asarray(inputs[k]) for k in ("token_ids", "padding_mask")}
    p = rejection.adjusted_probabilities(target.predict_on_batch(inputs), base_sampler)
    q = rejection.adjusted_probabilities(draft.predict_on_batch(inputs), base_sampler)
    beta = acceptance_rate(np.asarray(p), np.asarray(q), per_position=True)
    # The prediction at position t is for token t + 1: count it where both
    # positions are real tokens.
    mask = inputs["padding_mask"][:, :-1] & inputs["padding_mask"][:, 1:]
    return float(beta[:, :-1][mask].mean())
