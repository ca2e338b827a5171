"""The paper's theory as small pure functions (Leviathan et al., 2023, §3).

alpha is the expected acceptance rate E[beta], beta = sum_x min(p(x), q(x));
gamma the number of draft tokens per round; c the cost of one draft step
relative to one target step.

Nothing here runs a model or reads a clock (that is `keras_specdec.measure`).
The functions take Python numbers or arrays; `expected_tokens_per_step`,
`expected_speedup` and `expected_speedup_with_verify_cost` also run on traced
tensors inside the sampler's compiled loop (`rounds.TheoremSchedule`).
Arguments given as Python (or NumPy scalar) numbers are checked: a value
outside the range the formula is defined on (alpha outside [0, 1], a negative
or non-finite c, ...) raises a `ValueError` naming it, instead of returning a
number that means nothing. Arrays and tensors are not checked (a check would
not run inside a compiled loop).

>>> round(expected_tokens_per_step(0.8, 4), 4)
3.3616
>>> round(expected_speedup(0.8, 4, 0.05), 4)
2.8013
"""

import math
import numbers

import numpy as np


def _is_number(value):
    """A Python or NumPy scalar number (bools included, to refuse them);
    arrays and (traced) tensors are not."""
    return isinstance(value, (numbers.Number, np.bool_))


def _check(name, value, meaning, *, low=0.0, high=None, low_open=False, integral=False):
    """Refuse a number outside [low, high] (or (low, high] with low_open);
    anything that is not a scalar number passes unchecked."""
    if not _is_number(value):
        return
    ok = not isinstance(value, (bool, np.bool_)) and isinstance(value, numbers.Real)
    ok = ok and math.isfinite(value)
    if ok and integral:
        ok = isinstance(value, numbers.Integral)
    if ok:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value <= high
    if not ok:
        bound = "(" if low_open else "["
        upper = "inf)" if high is None else f"{high}]"
        kind = "an int" if integral else "a finite number"
        raise ValueError(
            f"`{name}` must be {kind} in {bound}{low}, {upper} ({meaning}), "
            f"got {value!r}."
        )


ALPHA = "the expected acceptance rate, a probability"
GAMMA = "draft tokens per round"
COST = "time(draft step) / time(target step)"
VERIFY_COST = "time(gamma + 1 token pass) / time(one target step)"


def acceptance_rate(target_probs, draft_probs, *, per_position=False):
    """beta = sum_x min(p(x), q(x)) per position (Theorem 3.5, Corollary 3.6).

    Args:
        target_probs: array `(..., vocab)`, p.
        draft_probs: array `(..., vocab)`, q.
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
    _check("alpha", alpha, ALPHA, high=1.0)
    _check("gamma", gamma, GAMMA, integral=True)
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
    _check("c", c, COST)
    return expected_tokens_per_step(alpha, gamma) / (gamma * c + 1.0)


def optimal_num_speculative_tokens(alpha, c, *, max_gamma=32):
    """The gamma in 1..max_gamma that maximises Theorem 3.8.

    >>> optimal_num_speculative_tokens(0.8, 0.05)
    8
    >>> optimal_num_speculative_tokens(0.9, 0.01)
    24
    """
    _check("alpha", alpha, ALPHA, high=1.0)
    _check("c", c, COST)
    _check("max_gamma", max_gamma, "the largest gamma tried", low=1, integral=True)
    gammas = range(1, max_gamma + 1)
    return max(gammas, key=lambda g: expected_speedup(alpha, g, c))


def expected_ops_increase(alpha, gamma, c_hat):
    """Theorem 3.11: expected factor of arithmetic operations,
    (1 - alpha)(gamma c_hat + gamma + 1) / (1 - alpha^(gamma+1)),
    where c_hat is the draft's operations per token relative to the target's.

    >>> round(expected_ops_increase(0.8, 4, 0.0), 4)
    1.4874
    """
    _check("c_hat", c_hat, "the draft's operations per token / the target's")
    return (gamma * c_hat + gamma + 1.0) / expected_tokens_per_step(alpha, gamma)


def speedup_lower_bound(alpha, c):
    """Corollary 3.9: if alpha > c there is a gamma (gamma = 1 suffices) with
    improvement >= (1 + alpha) / (1 + c); returns None when alpha <= c.

    >>> round(speedup_lower_bound(0.7, 0.1), 4)
    1.5455
    >>> speedup_lower_bound(0.1, 0.2) is None
    True
    """
    _check("alpha", alpha, ALPHA, high=1.0)
    _check("c", c, COST)
    if alpha <= c:
        return None
    return (1.0 + alpha) / (1.0 + c)


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
    _check("c", c, COST)
    _check("verify_cost", verify_cost, VERIFY_COST, low_open=True)
    return expected_tokens_per_step(alpha, gamma) / (gamma * c + verify_cost)
