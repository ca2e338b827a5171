"""The math of speculative sampling (Leviathan et al., 2023, Algorithm 1).

Pure `keras.ops` functions with static shapes. Every probability is float32.

Two pieces:

- `adjusted_probabilities(logits, base_sampler)` turns logits into the exact
  distribution that a KerasHub base sampler (`GreedySampler`, `RandomSampler`,
  `TopKSampler`, `TopPSampler`) samples from, temperature included. Both the
  target's `target_probs` (p) and the draft's `draft_probs` (q) go through it,
  so speculative sampling preserves *that* distribution.
- `rejection_sample(...)` verifies gamma draft tokens against the target:
  accept token x with probability min(1, p(x) / q(x)); at the first rejection
  draw the *recovered* token from norm(max(0, p - q)); when all gamma are
  accepted draw the *bonus* token from p_{gamma+1}.
- `block_rejection_sample(...)` verifies the gamma draft tokens jointly
  (block verification, Sun et al., 2024, Algorithm 2): same inputs, outputs
  and random draws, never fewer accepted tokens in expectation.
"""

import math
import numbers

import keras_hub
import numpy as np
from keras import ops, random
from keras_hub.samplers import GreedySampler, RandomSampler, TopKSampler, TopPSampler

SUPPORTED_BASE_SAMPLERS = (GreedySampler, RandomSampler, TopKSampler, TopPSampler)

# The logit of a token that must never be drawn (a draft's impossible
# tokens, the padding of a smaller draft vocabulary): exp(-1e9 - max) is
# exactly 0 in float32/bfloat16 (and -inf in float16), and the logit is
# finite, so temperature, top-k and top-p arithmetic stay NaN-free.
NEVER_LOGIT = -1e9


def get_base_sampler(base_sampler):
    """The KerasHub sampler instance whose distribution speculative decoding
    preserves, from a name, a config dict or an instance.

    Args:
        base_sampler: `"greedy"`, `"random"`, `"top_k"`, `"top_p"`, a config
            dict, or an instance of `GreedySampler`, `RandomSampler`,
            `TopKSampler` or `TopPSampler` (not a subclass that overrides how
            it picks tokens).

    Returns:
        The sampler instance.

    Raises:
        ValueError: for any other sampler (beam, contrastive, a subclass
            with its own `get_next_token` / `compute_probabilities`), and for
            settings with no next-token distribution (`check_sampler_settings`).

    >>> type(get_base_sampler("top_k")).__name__
    'TopKSampler'
    """
    if isinstance(base_sampler, (str, dict)):
        base_sampler = keras_hub.samplers.get(base_sampler)
    for cls in SUPPORTED_BASE_SAMPLERS:
        if isinstance(base_sampler, cls):
            overridden = (
                type(base_sampler).get_next_token is not cls.get_next_token
                or type(base_sampler).compute_probabilities
                is not cls.compute_probabilities
            )
            if not overridden:
                check_sampler_settings(base_sampler)
                return base_sampler
    raise ValueError(
        "`base_sampler` must be one of 'greedy', 'random', 'top_k', 'top_p' "
        "(or an instance of GreedySampler, RandomSampler, TopKSampler, "
        "TopPSampler), whose next-token distribution speculative decoding "
        f"can preserve exactly; got {base_sampler!r}. Beam and contrastive "
        "search pick tokens from several candidates and cannot be verified "
        "token by token."
    )


def base_sampler_for(temperature, seed=None, top_p=None):
    """The KerasHub sampler a sampling temperature stands for.

    Args:
        temperature: float >= 0; 0 stands for greedy decoding.
        seed: the sampler's seed (ignored at temperature 0).
        top_p: optional, sample from the top-p nucleus (`TopPSampler`).

    Returns:
        `GreedySampler()` at temperature 0, else `RandomSampler` (or
        `TopPSampler` with `top_p`) at that temperature.

    >>> type(base_sampler_for(0)).__name__, base_sampler_for(0.7).temperature
    ('GreedySampler', 0.7)
    """
    if not _is_real(temperature) or not math.isfinite(temperature) or temperature < 0:
        raise ValueError(
            f"`temperature` must be a finite number >= 0 (0 for greedy "
            f"decoding), got {temperature!r}."
        )
    if temperature == 0:
        return GreedySampler()
    if top_p is not None:
        return TopPSampler(p=top_p, temperature=temperature, seed=seed)
    return RandomSampler(temperature=temperature, seed=seed)


def _is_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(
        value, (bool, np.bool_)
    )


def _is_real(value):
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def check_sampler_settings(base_sampler):
    """Refuse base-sampler settings that define no next-token distribution.

    KerasHub checks none of these when a sampler is built: `k=0` fails
    inside tracing with "attempt to get argmax of an empty sequence" (and
    `rejection.adjusted_probabilities` would keep no token: all-zero output
    without a word); temperature 0 or NaN makes softmax(logits / T) NaN
    (KerasHub's output is then all token 0), and a negative temperature
    turns the distribution upside down (even greedy decoding then picks the
    least likely token). top-p outside (0, 1] is refused too: p <= 0 is
    greedy decoding and p > 1 is p = 1 in disguise; say which one you mean.

    Args:
        base_sampler: a `GreedySampler`, `RandomSampler`, `TopKSampler` or
            `TopPSampler`.

    Raises:
        ValueError: naming the setting and the fix.
    """
    name = type(base_sampler).__name__
    temperature = base_sampler.temperature
    if not _is_real(temperature) or not math.isfinite(temperature) or temperature <= 0:
        raise ValueError(
            f"The base sampler's `temperature` must be a finite number > 0 "
            f"(the logits are divided by it), got {temperature!r} on {name}. "
            'For deterministic decoding use `base_sampler="greedy"`.'
        )
    if isinstance(base_sampler, TopKSampler) and not (
        _is_int(base_sampler.k) and base_sampler.k >= 1
    ):
        raise ValueError(
            "`TopKSampler(k=...)` needs an int k >= 1 (the number of most "
            f"likely tokens it samples from), got k={base_sampler.k!r}."
        )
    if isinstance(base_sampler, TopPSampler):
        p, k = base_sampler.p, base_sampler.k
        if not _is_real(p) or not 0 < p <= 1:
            raise ValueError(
                "`TopPSampler(p=...)` needs 0 < p <= 1 (the probability mass "
                f"it samples from), got p={p!r}. For p -> 0 use "
                '`base_sampler="greedy"`; p = 1 keeps every token.'
            )
        if k is not None and not (_is_int(k) and k >= 1):
            raise ValueError(
                "`TopPSampler(k=...)` needs None or an int k >= 1 (a top-k cut "
                f"before the top-p one), got k={k!r}."
            )


def is_greedy(base_sampler):
    """Whether `base_sampler` is deterministic argmax decoding."""
    return isinstance(base_sampler, GreedySampler)


def _sorted_keep_mask(sorted_probs, base_sampler):
    """Which entries of the descending-sorted probabilities the sampler keeps.

    Mirrors `TopKSampler.get_next_token` / `TopPSampler.get_next_token`
    exactly: top-k keeps ranks < k; top-p keeps a token when the cumulative
    probability of the tokens ranked strictly before it is <= p (the first
    token is always kept), after an optional top-k cut.
    """
    vocab_size = ops.shape(sorted_probs)[-1]
    rank = ops.arange(vocab_size)  # (vocab,)
    if isinstance(base_sampler, TopKSampler):
        return rank < base_sampler.k
    # TopPSampler.
    cumulative = ops.cumsum(sorted_probs, axis=-1)
    keep = cumulative <= base_sampler.p
    shifted_keep = ops.concatenate(
        [ops.ones_like(keep[..., :1]), keep[..., :-1]], axis=-1
    )
    if base_sampler.k is not None:
        shifted_keep = ops.logical_and(shifted_keep, rank < base_sampler.k)
    return shifted_keep


def adjusted_probabilities(logits, base_sampler):
    """The distribution `base_sampler` draws the next token from.

    Args:
        logits: float tensor `(..., vocab)`.
        base_sampler: a `GreedySampler`, `RandomSampler`, `TopKSampler` or
            `TopPSampler`.

    Returns:
        float32 tensor `(..., vocab)` that sums to 1 on the last axis, with
        exact zeros on every token the base sampler can never pick.

    >>> import numpy as np
    >>> from keras_hub.samplers import TopKSampler
    >>> logits = np.log(np.array([[0.1, 0.2, 0.3, 0.4]], "float32"))
    >>> probs = adjusted_probabilities(logits, TopKSampler(k=2))
    >>> np.round(np.asarray(probs, "float64"), 4).tolist()
    [[0.0, 0.0, 0.4286, 0.5714]]
    """
    vocab_size = ops.shape(logits)[-1]
    if is_greedy(base_sampler):
        token = ops.argmax(logits, axis=-1)
        return ops.one_hot(token, vocab_size, dtype="float32")
    probs = base_sampler.compute_probabilities(logits)  # float32 softmax(l/T)
    if type(base_sampler) is RandomSampler:
        return probs
    sorted_probs, sorted_indices = ops.top_k(probs, k=vocab_size, sorted=True)
    keep = _sorted_keep_mask(sorted_probs, base_sampler)  # (..., vocab) sorted
    # Undo the sort: position v of the vocabulary sits at rank inverse[v].
    inverse = ops.argsort(sorted_indices, axis=-1)
    keep = ops.take_along_axis(
        ops.broadcast_to(keep, ops.shape(sorted_probs)), inverse, axis=-1
    )
    kept = ops.where(keep, probs, ops.zeros_like(probs))
    return kept / ops.sum(kept, axis=-1, keepdims=True)


def sample_categorical(probs, seed):
    """Draw one token per row of `probs` `(..., vocab)` by inverse CDF.

    One uniform u per row; the token is the first x whose cumulative
    probability exceeds u times the row's total. Zero-probability tokens are
    never drawn (the CDF does not rise at them). This replaces a Gumbel-max
    draw (`keras.random.categorical`), which makes vocab-many random numbers
    per row and which XLA:CPU compiles into a loop per draw: at T > 0 a round
    has gamma + 1 such draws, a cost that grew with gamma (issue 13).

    >>> import numpy as np
    >>> probs = np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]], "float32")
    >>> np.asarray(sample_categorical(probs, seed=0)).tolist()
    [1, 2]
    """
    shape = ops.shape(probs)
    vocab = shape[-1]
    flat = ops.reshape(probs, (-1, vocab))  # (rows, vocab)
    cdf = ops.cumsum(flat, axis=-1)  # (rows, vocab)
    u = random.uniform((ops.shape(flat)[0], 1), seed=seed)  # (rows, 1)
    threshold = u * cdf[:, -1:]  # (rows, 1)
    tokens = ops.sum(ops.cast(cdf <= threshold, "int32"), axis=-1)  # (rows,)
    # u * total can round up to the total (probability ~2^-24): never step
    # past the last token with probability mass.
    last = vocab - 1 - ops.argmax(ops.cast(ops.flip(flat, axis=-1) > 0, "int32"), -1)
    tokens = ops.minimum(tokens, ops.cast(last, "int32"))
    return ops.reshape(tokens, shape[:-1])


def residual_distribution(target_probs, draft_probs):
    """norm(max(0, p - q)): where the recovered token is drawn from.

    When p == q up to rounding the residual has (almost) no mass and a
    rejection is (almost) impossible; if one happens anyway the residual is
    all zeros and we fall back to p, so there is never a NaN and never mass on
    a token with p(x) = 0 (max(0, p - q) is zero wherever p is).

    >>> import numpy as np
    >>> p = np.array([0.5, 0.5, 0.0], "float32")
    >>> q = np.array([0.25, 0.75, 0.0], "float32")
    >>> np.asarray(residual_distribution(p, q)).tolist()
    [1.0, 0.0, 0.0]
    >>> np.asarray(residual_distribution(p, p)).tolist()
    [0.5, 0.5, 0.0]
    """
    residual = ops.maximum(target_probs - draft_probs, 0.0)
    total = ops.sum(residual, axis=-1, keepdims=True)
    return ops.where(
        total > 0.0, residual / ops.where(total > 0.0, total, 1.0), target_probs
    )


def rejection_sample(
    draft_token_ids,
    draft_probs,
    target_probs,
    forced,
    forced_token_ids,
    seed,
    num_proposed=None,
    recovery_seed=None,
):
    """Verify gamma draft tokens per row (Algorithm 1 of the paper).

    Args:
        draft_token_ids: int `(batch, gamma)`, the proposals, sampled from
            `draft_probs` (forced positions hold their forced token).
        draft_probs: float32 `(batch, gamma, vocab)`, q at each proposal.
        target_probs: float32 `(batch, gamma + 1, vocab)`, p at each proposal
            and at the bonus position.
        forced: bool `(batch, gamma + 1)`. True where the token is already
            decided (a prompt token, or a token this row decided in an earlier
            round); such positions are accepted without a test, and a forced
            bonus position keeps its token.
        forced_token_ids: int `(batch, gamma + 1)`, the tokens at forced
            positions (ignored elsewhere).
        seed: a `keras.random.SeedGenerator`, or a seed tensor for the
            acceptance tests (then pass a different `recovery_seed`).
        num_proposed: optional int32, a scalar or `(batch,)` per row, <=
            gamma: only the first `num_proposed` draft tokens of a row were
            proposed this round (adaptive gamma, rows near `max_length`,
            finished rows: 0); the rest are never accepted, and the token
            after the last proposal is drawn from p (q is zero there: the
            residual is p).
        recovery_seed: seed of the recovered/bonus draw; defaults to `seed`
            (right for a generator, which advances between the two draws;
            a seed tensor must not be reused).

    Returns:
        `(output_token_ids, num_accepted)`:
        output_token_ids int32 `(batch, gamma + 1)`: the accepted draft tokens,
        then at index `num_accepted` the recovered (after a rejection) or bonus
        (all accepted) token; entries after that are meaningless.
        num_accepted int32 `(batch,)`: leading accepted draft tokens.
    """
    gamma = ops.shape(draft_token_ids)[1]
    draft_token_ids = ops.cast(draft_token_ids, "int32")
    forced_token_ids = ops.cast(forced_token_ids, "int32")
    proposed = _proposed_mask(gamma, num_proposed)  # (1, gamma)
    draft_probs = ops.where(proposed[..., None], draft_probs, 0.0)
    index = draft_token_ids[..., None]  # (batch, gamma, 1)
    q_x = ops.take_along_axis(draft_probs, index, axis=-1)[..., 0]
    p_x = ops.take_along_axis(target_probs[:, :gamma], index, axis=-1)[..., 0]
    uniform = random.uniform(ops.shape(q_x), seed=seed)  # (batch, gamma)
    # P(u * q < p) = min(1, p / q) for u ~ U[0, 1); p = 0 is never accepted.
    accepted = ops.logical_or(uniform * q_x < p_x, forced[:, :gamma])
    accepted = ops.logical_and(accepted, proposed)
    accepted_prefix = ops.cumprod(ops.cast(accepted, "int32"), axis=1)
    num_accepted = ops.sum(accepted_prefix, axis=1)  # (batch,)

    # Recovered (j < gamma) or bonus (j = gamma) distribution at num_accepted.
    bonus_probs = target_probs[:, gamma:]  # (batch, 1, vocab)
    residual_probs = residual_distribution(target_probs[:, :gamma], draft_probs)
    recovery_probs = ops.concatenate([residual_probs, bonus_probs], axis=1)
    at = num_accepted[:, None, None]
    chosen_probs = ops.take_along_axis(recovery_probs, at, axis=1)[:, 0]
    return _write_recovered(
        draft_token_ids, num_accepted, chosen_probs, forced, forced_token_ids,
        recovery_seed if recovery_seed is not None else seed,
    )  # fmt: skip


def _proposed_mask(gamma, num_proposed):
    positions = ops.arange(gamma, dtype="int32")[None, :]
    if num_proposed is None:
        return positions < gamma
    return positions < ops.reshape(ops.cast(num_proposed, "int32"), (-1, 1))


def greedy_verify(
    draft_token_ids, target_logits, forced, forced_token_ids, num_proposed=None
):
    """`rejection_sample` for greedy decoding, without random numbers.

    q and p are one-hot, so a draft token is accepted iff it is the target's
    argmax, and the recovered / bonus token is the target's argmax.

    Args:
        draft_token_ids: int `(batch, gamma)`.
        target_logits: float `(batch, gamma + 1, vocab)`.
        forced: bool `(batch, gamma + 1)`, as in `rejection_sample`.
        forced_token_ids: int `(batch, gamma + 1)`, as in
            `rejection_sample`.
        num_proposed: optional int32 scalar or `(batch,)`, as in
            `rejection_sample`.

    Returns:
        `(output_token_ids, num_accepted)` as `rejection_sample`: int32
        `(batch, gamma + 1)` (the target's argmax, forced tokens kept) and
        int32 `(batch,)`.

    >>> import numpy as np
    >>> logits = np.eye(8, dtype="float32")[[[1, 5, 6, 7]]]  # argmax 1, 5, 6, 7
    >>> out, n = greedy_verify(np.array([[1, 2, 3]]), logits,
    ...                        np.zeros((1, 4), bool), np.zeros((1, 4), "int32"))
    >>> np.asarray(out).tolist(), np.asarray(n).tolist()
    ([[1, 5, 6, 7]], [1])
    """
    gamma = ops.shape(draft_token_ids)[1]
    draft_token_ids = ops.cast(draft_token_ids, "int32")
    target_token_ids = ops.cast(ops.argmax(target_logits, axis=-1), "int32")
    target_token_ids = ops.where(
        forced, ops.cast(forced_token_ids, "int32"), target_token_ids
    )  # (batch, gamma + 1)
    accepted = ops.logical_or(
        draft_token_ids == target_token_ids[:, :gamma], forced[:, :gamma]
    )
    accepted = ops.logical_and(accepted, _proposed_mask(gamma, num_proposed))
    num_accepted = ops.sum(ops.cumprod(ops.cast(accepted, "int32"), axis=1), axis=1)
    return target_token_ids, num_accepted


def block_acceptance_probabilities(
    draft_token_ids, draft_probs, target_probs, forced, forced_token_ids,
    num_proposed=None,
):  # fmt: skip
    """The quantities of block verification (Sun et al., 2024, Algorithm 2).

    With x_1 .. x_n the row's proposals (n = num_proposed), p_i / q_i the
    target's / draft's distributions after x_1 .. x_i (q_n = 0: nothing is
    proposed after the block), the algorithm's weights are

        w_0 = 1,   w_i = min(1, w_{i-1} p_{i-1}(x_i) / q_{i-1}(x_i)),

    and the probability of stopping at i (keeping x_1 .. x_i, unless a later
    position stops) is

        h_i = r_i / (r_i + 1 - w_i),   r_i = sum_x max(0, w_i p_i(x) - q_i(x)),

    for 1 <= i <= n (h_n = w_n since q_n = 0). `block_rejection_sample`
    accepts tau = the largest i with eta_i <= h_i (0 if none).

    Forced positions (prompt tokens) are decided in both processes: there p
    and q are point masses on the forced token (so w does not change, and a
    block never stops right before a forced position unless every later
    position is accepted with certainty anyway).

    Args:
        draft_token_ids: int `(batch, gamma)`.
        draft_probs: float32 `(batch, gamma, vocab)`, q at each proposal.
        target_probs: float32 `(batch, gamma + 1, vocab)`, p at each proposal
            and after the last one.
        forced, forced_token_ids: `(batch, gamma + 1)`, as in
            `rejection_sample`.
        num_proposed: optional int32 scalar or `(batch,)` <= gamma.

    Returns:
        `(weights, stop_probs, target_probs, draft_probs)`:
        weights float32 `(batch, gamma + 1)`, w_0 .. w_gamma;
        stop_probs float32 `(batch, gamma + 1)`, h_0 .. h_gamma, zero past
        num_proposed and h_0 = 1 (tau = 0 needs no test);
        target_probs, draft_probs float32 `(batch, gamma + 1, vocab)`: p and
        q with forced positions as point masses and q zero from num_proposed
        on (slot gamma included), which the residual at tau is drawn from.

    >>> import numpy as np
    >>> # One proposal (token 0) on a 2-token vocabulary: w_1 = p/q = 0.5/0.8.
    >>> q = np.array([[[0.8, 0.2]]], "float32")
    >>> p = np.array([[[0.5, 0.5], [0.3, 0.7]]], "float32")
    >>> w, h, _, _ = block_acceptance_probabilities(
    ...     np.array([[0]]), q, p, np.zeros((1, 2), bool), np.zeros((1, 2), int))
    >>> np.round(np.asarray(w), 4).tolist(), np.round(np.asarray(h), 4).tolist()
    ([[1.0, 0.625]], [[1.0, 0.625]])
    """
    gamma = ops.shape(draft_token_ids)[1]
    vocab = ops.shape(target_probs)[-1]
    draft_token_ids = ops.cast(draft_token_ids, "int32")
    forced_token_ids = ops.cast(forced_token_ids, "int32")
    forced_one_hot = ops.one_hot(
        forced_token_ids, vocab, dtype="float32"
    )  # (batch, gamma + 1, vocab)
    target_probs = ops.where(
        forced[..., None], forced_one_hot, ops.cast(target_probs, "float32")
    )  # (batch, gamma + 1, vocab)
    draft_token_ids = ops.where(
        forced[:, :gamma], forced_token_ids[:, :gamma], draft_token_ids
    )  # (batch, gamma)
    draft_probs = ops.where(
        forced[:, :gamma, None],
        forced_one_hot[:, :gamma],
        ops.cast(draft_probs, "float32"),
    )  # (batch, gamma, vocab)
    proposed = _proposed_mask(gamma, num_proposed)  # (batch or 1, gamma)
    draft_probs = ops.where(proposed[..., None], draft_probs, 0.0)
    draft_probs = ops.concatenate(
        [draft_probs, ops.zeros_like(target_probs[:, :1])], axis=1
    )  # (batch, gamma + 1, vocab): nothing is proposed after the block

    index = draft_token_ids[..., None]  # (batch, gamma, 1)
    q_x = ops.take_along_axis(draft_probs[:, :gamma], index, axis=-1)[..., 0]
    p_x = ops.take_along_axis(target_probs[:, :gamma], index, axis=-1)[..., 0]
    # p(x) / q(x) (batch, gamma); q(x) > 0 for every proposal that was drawn,
    # 0 past num_proposed (those weights are never used).
    ratio = ops.where(q_x > 0.0, p_x / ops.where(q_x > 0.0, q_x, 1.0), 0.0)
    weight = ops.ones_like(target_probs[:, 0, 0])  # (batch,) w_0
    weights = [weight]
    for i in range(gamma):  # gamma is static and small
        weight = ops.minimum(weight * ratio[:, i], 1.0)
        weights.append(weight)
    weights = ops.stack(weights, axis=1)  # (batch, gamma + 1)

    residual_mass = ops.sum(
        ops.maximum(weights[..., None] * target_probs - draft_probs, 0.0), axis=-1
    )  # (batch, gamma + 1) r_i
    denominator = residual_mass + 1.0 - weights
    # 0 / 0 only where w_i = 1 and p_i = q_i: then every later w is 1 and
    # h_n = 1, so tau = n whatever h_i is; 1 avoids a NaN.
    stop_probs = ops.where(
        denominator > 0.0,
        residual_mass / ops.where(denominator > 0.0, denominator, 1.0),
        1.0,
    )
    stop_probs = ops.minimum(stop_probs, 1.0)
    candidate = ops.concatenate(
        [ops.ones((ops.shape(proposed)[0], 1), "bool"), proposed], axis=1
    )  # (batch or 1, gamma + 1): tau in 0 .. num_proposed
    stop_probs = ops.where(candidate, stop_probs, 0.0)
    stop_probs = ops.where(
        ops.arange(gamma + 1)[None, :] == 0, 1.0, stop_probs
    )  # (batch, gamma + 1)
    return weights, stop_probs, target_probs, draft_probs


def block_rejection_sample(
    draft_token_ids,
    draft_probs,
    target_probs,
    forced,
    forced_token_ids,
    seed,
    num_proposed=None,
    recovery_seed=None,
):
    """Verify each row's gamma draft tokens as one block (Sun et al., 2024).

    Block verification (Algorithm 2 of "Block Verification Accelerates
    Speculative Decoding"): with the weights w_i and stop probabilities h_i of
    `block_acceptance_probabilities`, draw eta_1 .. eta_n ~ U[0, 1), keep
    tau = the largest i with eta_i < h_i (0 if none) proposals, and draw the
    token after them from the residual norm(max(0, w_tau p_tau - q_tau))
    (tau = n: the bonus token, from p_n). The output follows the target's
    distribution exactly (the paper's Theorem 2) and its expected accepted
    length is never below token-level verification's (`rejection_sample`,
    Theorem 3), at the same model calls.

    Same arguments, random draws (gamma uniforms, one recovered / bonus draw)
    and outputs as `rejection_sample`; q may be a point mass (model-free
    drafts); forced positions and num_proposed are honoured the same way.

    Returns:
        `(output_token_ids, num_accepted)`: int32 `(batch, gamma + 1)`, the
        accepted draft tokens then the recovered or bonus token at
        `num_accepted`; int32 `(batch,)`.

    >>> import numpy as np
    >>> p = np.eye(3, dtype="float32")[[[1, 2, 0]]]  # the target is sure
    >>> out, n = block_rejection_sample(
    ...     np.array([[1, 0]]), np.eye(3, dtype="float32")[[[1, 0]]], p,
    ...     np.zeros((1, 3), bool), np.zeros((1, 3), "int32"), seed=0)
    >>> np.asarray(n).tolist(), np.asarray(out)[0, : int(n[0]) + 1].tolist()
    ([1], [1, 2])
    """
    gamma = ops.shape(draft_token_ids)[1]
    forced_token_ids = ops.cast(forced_token_ids, "int32")
    draft_token_ids = ops.where(
        forced[:, :gamma], forced_token_ids[:, :gamma], draft_token_ids
    )  # (batch, gamma)
    draft_token_ids = ops.cast(draft_token_ids, "int32")
    weights, stop_probs, target_probs, draft_probs = block_acceptance_probabilities(
        draft_token_ids, draft_probs, target_probs, forced, forced_token_ids,
        num_proposed,
    )  # fmt: skip
    uniform = random.uniform(
        ops.shape(draft_token_ids), seed=seed
    )  # (batch, gamma): eta_1 .. eta_gamma
    stops = uniform < stop_probs[:, 1:]  # (batch, gamma)
    positions = ops.arange(1, gamma + 1, dtype="int32")[None, :]
    # tau: the last position that stops (0 if none; a round of size 0 is a
    # plain step: the token is drawn from p_0).
    stopped_at = ops.pad(
        ops.where(stops, positions, 0), [[0, 0], [1, 0]]
    )  # (batch, gamma + 1), a leading 0 column
    num_accepted = ops.max(stopped_at, axis=1)  # (batch,)
    num_accepted = ops.cast(num_accepted, "int32")

    # The residual at tau: norm(max(0, w_tau p_tau - q_tau)); tau = n: p_n.
    at = num_accepted[:, None, None]
    chosen_target = ops.take_along_axis(target_probs, at, axis=1)[:, 0]
    chosen_draft = ops.take_along_axis(draft_probs, at, axis=1)[:, 0]
    chosen_weight = ops.take_along_axis(weights, num_accepted[:, None], axis=1)
    residual = ops.maximum(chosen_weight * chosen_target - chosen_draft, 0.0)
    total = ops.sum(residual, axis=-1, keepdims=True)  # (batch, 1)
    # No residual mass only when stopping had probability ~0: fall back to p.
    chosen_probs = ops.where(
        total > 0.0, residual / ops.where(total > 0.0, total, 1.0), chosen_target
    )  # (batch, vocab)
    return _write_recovered(
        draft_token_ids, num_accepted, chosen_probs, forced, forced_token_ids,
        recovery_seed if recovery_seed is not None else seed,
    )  # fmt: skip


def _write_recovered(
    draft_token_ids, num_accepted, chosen_probs, forced, forced_token_ids, seed
):
    """The token after each row's accepted proposals, written at
    `num_accepted`: drawn from `chosen_probs` (the residual after a
    rejection, p_{gamma+1} for the bonus), or the prompt token where that
    position is forced.

    Args:
        draft_token_ids: int `(batch, gamma)`.
        num_accepted: int32 `(batch,)`.
        chosen_probs: float `(batch, vocab)`, the recovered / bonus
            distribution of each row.
        forced, forced_token_ids: `(batch, gamma + 1)` prompt positions and
            their tokens.
        seed: the draw's seed.

    Returns:
        `(output, num_accepted)`: int32 `(batch, gamma + 1)`.
    """
    gamma = ops.shape(draft_token_ids)[1]
    recovered = sample_categorical(chosen_probs, seed)  # (batch,)
    forced_at = ops.take_along_axis(forced, num_accepted[:, None], axis=1)[:, 0]
    forced_token_at = ops.take_along_axis(
        forced_token_ids, num_accepted[:, None], axis=1
    )[:, 0]
    recovered = ops.where(forced_at, forced_token_at, recovered)

    output = ops.concatenate([draft_token_ids, recovered[:, None]], axis=1)
    positions = ops.arange(gamma + 1)[None, :]
    output = ops.where(positions == num_accepted[:, None], recovered[:, None], output)
    return ops.cast(output, "int32"), num_accepted
