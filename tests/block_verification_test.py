"""Block verification (Sun et al., 2024, Algorithm 2) on hand-made distributions.

`paper_algorithm_2` below is the paper's Algorithm 2 written out by hand in
plain Python (1-indexed, float64, no keras): for one draft block it returns
the exact distribution of (tau, Y). Its exactness is checked by enumeration
(the output, completed by the target, is distributed as the target), and
`rejection.block_acceptance_probabilities` / `block_rejection_sample` are
checked against it.
"""

import itertools

import keras
import numpy as np
import pytest

from keras_specdec import rejection


def paper_algorithm_2(block, small, big):
    """Algorithm 2 for one draft block x_1 .. x_n.

    Args:
        block: list of n tokens.
        small: list of n distributions, small[i] = Ms(. | x_1 .. x_i).
        big: list of n + 1 distributions, big[i] = Mb(. | x_1 .. x_i).

    Returns:
        `(p, h, outcome)`: the weights p_0 .. p_n, the stop probabilities
        h_1 .. h_n (h[0] unused), and outcome[(tau, y)] = P(tau, Y = y).
    """
    n = len(block)
    vocab = len(big[0])
    p = [1.0]
    h = [None]
    for i in range(1, n + 1):
        x = block[i - 1]
        # Line 4: p_i = min(p_{i-1} Mb(x_i | X^{i-1}) / Ms(x_i | X^{i-1}), 1).
        p.append(min(p[i - 1] * big[i - 1][x] / small[i - 1][x], 1.0))
        if i < n:
            # Line 5: h_i = sum_x max(p_i Mb - Ms, 0)
            #               / (sum_x max(p_i Mb - Ms, 0) + 1 - p_i).
            mass = sum(max(p[i] * big[i][y] - small[i][y], 0.0) for y in range(vocab))
            h.append(mass / (mass + 1.0 - p[i]) if mass + 1.0 - p[i] > 0 else 1.0)
        else:
            h.append(p[n])  # h_n = p_n
    outcome = {}
    for tau in range(n + 1):
        # tau = the last i with eta_i <= h_i (0 if none).
        prob_tau = 1.0 if tau == 0 else h[tau]
        for j in range(tau + 1, n + 1):
            prob_tau *= 1.0 - h[j]
        if tau == n:
            residual = list(big[n])  # the bonus token, from Mb(. | X^n)
        else:
            residual = [
                max(p[tau] * big[tau][y] - small[tau][y], 0.0) for y in range(vocab)
            ]
        total = sum(residual)
        for y in range(vocab):
            if total > 0:
                outcome[(tau, y)] = prob_tau * residual[y] / total
            else:
                outcome[(tau, y)] = 0.0
    return p, h, outcome


def random_tree(vocab, depth, rng, point_mass=False, sharp=1.0):
    """dist[prefix] for every prefix of length <= depth: a random
    next-token distribution (a point mass if `point_mass`)."""
    tree = {}
    for length in range(depth + 1):
        for prefix in itertools.product(range(vocab), repeat=length):
            if point_mass:
                tree[prefix] = np.eye(vocab)[rng.integers(vocab)]
            else:
                tree[prefix] = rng.dirichlet(np.full(vocab, sharp))
    return tree


def blocks_of(small, big, vocab, gamma):
    """Every draft block of length gamma with its probability under the
    draft, and the per-position distributions Algorithm 2 reads."""
    for block in itertools.product(range(vocab), repeat=gamma):
        prob = np.prod([small[block[:i]][block[i]] for i in range(gamma)])
        if prob == 0:
            continue  # never drafted
        yield (
            list(block),
            prob,
            [small[block[:i]] for i in range(gamma)],
            [big[block[:i]] for i in range(gamma + 1)],
        )


def target_joint(big, vocab, length):
    return {
        seq: np.prod([big[seq[:i]][seq[i]] for i in range(length)])
        for seq in itertools.product(range(vocab), repeat=length)
    }


CASES = [(2, 2, False), (3, 2, False), (2, 3, False), (3, 3, False), (3, 2, True)]


@pytest.mark.parametrize("vocab,gamma,point_mass", CASES)
def test_paper_algorithm_is_exact_by_enumeration(vocab, gamma, point_mass):
    """Draft a block from Ms, verify it, let the target finish the gamma + 1
    tokens: every sequence has exactly its target probability."""
    rng = np.random.default_rng(vocab * 10 + gamma)
    for _ in range(5):
        small = random_tree(vocab, gamma, rng, point_mass)
        big = random_tree(vocab, gamma + 1, rng, sharp=0.5)
        produced = dict.fromkeys(target_joint(big, vocab, gamma + 1), 0.0)
        for block, prob, q, p in blocks_of(small, big, vocab, gamma):
            _, _, outcome = paper_algorithm_2(block, q, p)
            np.testing.assert_allclose(sum(outcome.values()), 1.0, rtol=1e-12)
            for (tau, y), prob_out in outcome.items():
                head = tuple(block[:tau]) + (y,)
                # The target decides the remaining gamma - tau tokens.
                for tail in itertools.product(range(vocab), repeat=gamma - tau):
                    seq = head + tail
                    rest = np.prod(
                        [big[seq[:i]][seq[i]] for i in range(len(head), gamma + 1)]
                    )
                    produced[seq] += prob * prob_out * rest
        expected = target_joint(big, vocab, gamma + 1)
        for seq in expected:
            np.testing.assert_allclose(produced[seq], expected[seq], atol=1e-12)


def test_literal_two_token_block():
    """gamma = 2 on a 2-token vocabulary, every number worked out by hand.

    Draft block x_1 = 0, x_2 = 1 with q_0 = (0.8, 0.2), q_1 = (0.4, 0.6);
    target p_0 = (0.5, 0.5), p_1 = (0.6, 0.4), p_2 = (0.3, 0.7).
      w_1 = min(1, 0.5 / 0.8) = 0.625
      w_2 = min(1, 0.625 * 0.4 / 0.6) = 5/12
      r_1 = max(0, 0.625 * 0.6 - 0.4) + max(0, 0.625 * 0.4 - 0.6) = 0
      h_1 = 0 / (0 + 1 - 0.625) = 0;  h_2 = w_2 = 5/12
    So tau = 2 with probability 5/12 (bonus from p_2), else tau = 0 with
    Y ~ norm(max(0, p_0 - q_0)) = (0, 1). Token-level: P(tau=2) = 0.625 *
    2/3 = 5/12 too, but it stops at tau = 1 with probability 0.625 / 3.
    """
    q = [[0.8, 0.2], [0.4, 0.6]]
    p = [[0.5, 0.5], [0.6, 0.4], [0.3, 0.7]]
    w, h, outcome = paper_algorithm_2([0, 1], q, p)
    np.testing.assert_allclose(w, [1.0, 0.625, 5 / 12])
    np.testing.assert_allclose(h[1:], [0.0, 5 / 12])
    expected = {(0, 0): 0.0, (0, 1): 7 / 12, (1, 0): 0.0, (1, 1): 0.0}
    expected.update({(2, 0): 5 / 12 * 0.3, (2, 1): 5 / 12 * 0.7})
    for key, value in expected.items():
        np.testing.assert_allclose(outcome[key], value, atol=1e-12)

    weights, stop_probs, _, _ = rejection.block_acceptance_probabilities(
        np.array([[0, 1]]),
        np.array([q], "float32"),
        np.array([p], "float32"),
        np.zeros((1, 3), bool),
        np.zeros((1, 3), "int32"),
    )
    np.testing.assert_allclose(np.asarray(weights)[0], [1.0, 0.625, 5 / 12], 1e-6)
    np.testing.assert_allclose(np.asarray(stop_probs)[0], [1.0, 0.0, 5 / 12], 1e-6)


def test_literal_stop_inside_block():
    """gamma = 2, 3 tokens: stopping after x_1 has a residual to draw from.

    x_1 = 2, x_2 = 0; q_0 = (0.2, 0.2, 0.6), q_1 = (0.5, 0.5, 0);
    p_0 = (0.3, 0.4, 0.3), p_1 = (0.2, 0.3, 0.5), p_2 = (1, 0, 0).
      w_1 = 0.3 / 0.6 = 0.5;  w_2 = min(1, 0.5 * 0.2 / 0.5) = 0.2
      r_1 = max(0, 0.1 - 0.5) + max(0, 0.15 - 0.5) + max(0, 0.25 - 0) = 0.25
      h_1 = 0.25 / (0.25 + 0.5) = 1/3;  h_2 = 0.2
      P(tau=2) = 0.2;  P(tau=1) = 1/3 * 0.8 = 4/15;  P(tau=0) = 2/3 * 0.8
      tau = 1: Y ~ norm(max(0, 0.5 p_1 - q_1)) = token 2;
      tau = 0: Y ~ norm(max(0, p_0 - q_0)) = (0.1, 0.2, 0) / 0.3.
    """
    q = [[0.2, 0.2, 0.6], [0.5, 0.5, 0.0]]
    p = [[0.3, 0.4, 0.3], [0.2, 0.3, 0.5], [1.0, 0.0, 0.0]]
    w, h, outcome = paper_algorithm_2([2, 0], q, p)
    np.testing.assert_allclose(w, [1.0, 0.5, 0.2])
    np.testing.assert_allclose(h[1:], [1 / 3, 0.2])
    np.testing.assert_allclose(outcome[(2, 0)], 0.2)
    np.testing.assert_allclose(outcome[(1, 2)], 4 / 15)
    np.testing.assert_allclose(outcome[(0, 0)], 8 / 15 / 3)
    np.testing.assert_allclose(outcome[(0, 1)], 8 / 15 * 2 / 3)
    assert_sampler_matches([2, 0], q, p)


def as_batch(block, q, p, num_proposed, forced=None, forced_tokens=None):
    """Pad one block to gamma = len(block): arrays for the keras functions."""
    gamma = len(block)
    if forced is None:
        forced = np.zeros(gamma + 1, bool)
        forced_tokens = np.zeros(gamma + 1, "int32")
    return (
        np.array([block], "int32"),
        np.array([q], "float32"),
        np.array([p], "float32"),
        np.array([forced]),
        np.array([forced_tokens], "int32"),
        np.array([num_proposed], "int32"),
    )


def assert_sampler_matches(block, q, p, num_proposed=None, **forced):
    """200k draws of `block_rejection_sample` on one block: the joint of
    (num_accepted, Y) matches Algorithm 2's exact one."""
    n = len(block) if num_proposed is None else num_proposed
    args = as_batch(block, q, p, n, **forced)
    _, _, outcome = paper_algorithm_2(
        block[:n],
        q[:n],
        p[: n + 1],
    )
    draws = 200_000
    batch = [np.repeat(a, draws, axis=0) for a in args]
    output, num_accepted = rejection.block_rejection_sample(
        *batch[:5],
        keras.random.SeedGenerator(1),
        num_proposed=batch[5],
    )
    output, num_accepted = np.asarray(output), np.asarray(num_accepted)
    assert (num_accepted <= n).all()
    # Accepted tokens are the block's.
    for tau in range(1, n + 1):
        rows = num_accepted == tau
        assert (output[rows, :tau] == np.array(block[:tau])).all()
    y = output[np.arange(draws), num_accepted]
    vocab = len(p[0])
    for (tau, token), prob in outcome.items():
        freq = np.mean((num_accepted == tau) & (y == token))
        # Binomial sd <= 0.5 / sqrt(200k) = 0.0011; 0.0056 is 5 sd.
        assert abs(freq - prob) < 0.0056, (tau, token, freq, prob)
    assert vocab == len(q[0])


def test_sampler_matches_the_paper_on_random_blocks():
    rng = np.random.default_rng(0)
    for vocab, gamma in [(2, 2), (3, 3)]:
        small = random_tree(vocab, gamma, rng)
        big = random_tree(vocab, gamma + 1, rng, sharp=0.5)
        block = [int(rng.choice(vocab, p=small[()]))]
        for i in range(1, gamma):
            block.append(int(rng.choice(vocab, p=small[tuple(block)])))
        q = [small[tuple(block[:i])] for i in range(gamma)]
        p = [big[tuple(block[:i])] for i in range(gamma + 1)]
        assert_sampler_matches(block, q, p)


def test_point_mass_draft_and_short_rows():
    """q a point mass (model-free drafts); num_proposed < gamma: the block is
    the first num_proposed tokens, the bonus from p at num_proposed."""
    q = np.eye(3)[[1, 1, 2]].tolist()
    p = [[0.2, 0.5, 0.3], [0.1, 0.6, 0.3], [0.3, 0.3, 0.4], [0.5, 0.25, 0.25]]
    assert_sampler_matches([1, 1, 2], q, p)
    assert_sampler_matches([1, 1, 2], q, p, num_proposed=2)
    assert_sampler_matches([1, 1, 2], q, p, num_proposed=0)


def test_forced_positions_are_point_masses():
    """A forced (prompt) position inside the block is decided in both
    processes: Algorithm 2 on p = q = its point mass; a forced position
    right after the block is the token that follows it."""
    block = [0, 2, 1]
    q = [[0.5, 0.3, 0.2], [0.1, 0.1, 0.8], [0.3, 0.4, 0.3]]
    p = [[0.3, 0.3, 0.4], [0.6, 0.2, 0.2], [0.2, 0.2, 0.6], [0.1, 0.8, 0.1]]
    forced = np.array([False, True, False, False])
    forced_tokens = np.array([0, 2, 0, 0], "int32")
    # What the forced position means: p_1 = q_1 = one-hot(2).
    q_forced = [q[0], [0.0, 0.0, 1.0], q[2]]
    p_forced = [p[0], [0.0, 0.0, 1.0], p[2], p[3]]
    _, h, _ = paper_algorithm_2(block, q_forced, p_forced)
    assert h[1] == 0.0  # never stop right before a forced token
    weights, stop_probs, _, _ = rejection.block_acceptance_probabilities(
        *as_batch(block, q, p, 3, forced, forced_tokens)[:5], num_proposed=[3]
    )
    np.testing.assert_allclose(np.asarray(stop_probs)[0, 1:], h[1:], rtol=1e-6)
    # The sampler on the raw q / p with the forced flags = Algorithm 2 on the
    # point masses.
    draws = 200_000
    args = [
        np.repeat(a, draws, 0) for a in as_batch(block, q, p, 3, forced, forced_tokens)
    ]
    output, num_accepted = rejection.block_rejection_sample(
        *args[:5], keras.random.SeedGenerator(2), num_proposed=args[5]
    )
    output, num_accepted = np.asarray(output), np.asarray(num_accepted)
    _, _, outcome = paper_algorithm_2(block, q_forced, p_forced)
    y = output[np.arange(draws), num_accepted]
    for (tau, token), prob in outcome.items():
        freq = np.mean((num_accepted == tau) & (y == token))
        assert abs(freq - prob) < 0.0056, (tau, token, freq, prob)  # 5 sd
    # A forced bonus position keeps its token (as in rejection_sample).
    forced_bonus = np.array([False, False, True, False])
    args = as_batch([0, 2, 1], q, p, 2, forced_bonus, np.array([0, 0, 1, 0]))
    output, num_accepted = rejection.block_rejection_sample(
        *[np.repeat(a, 1000, 0) for a in args[:5]],
        keras.random.SeedGenerator(3),
        num_proposed=np.repeat(args[5], 1000, 0),
    )
    output, num_accepted = np.asarray(output), np.asarray(num_accepted)
    assert (output[num_accepted == 2, 2] == 1).all() and (num_accepted == 2).any()


@pytest.mark.parametrize("vocab,gamma,point_mass", CASES)
def test_block_accepts_at_least_as_many_as_token_level(vocab, gamma, point_mass):
    """E[num_accepted] over the draft's blocks, exactly: block verification
    (from the keras stop probabilities) >= token-level verification
    (sum over i of prod_{j <= i} min(1, p / q)), the paper's Theorem 3;
    equal for point-mass (model-free) drafts."""
    rng = np.random.default_rng(100 + vocab * 10 + gamma)
    gains = []
    for _ in range(10):
        small = random_tree(vocab, gamma, rng, point_mass)
        big = random_tree(vocab, gamma + 1, rng, sharp=0.5)
        blocks, probs, qs, ps = zip(*blocks_of(small, big, vocab, gamma))
        _, stop_probs, _, _ = rejection.block_acceptance_probabilities(
            np.array(blocks, "int32"),
            np.array(qs, "float32"),
            np.array(ps, "float32"),
            np.zeros((len(blocks), gamma + 1), bool),
            np.zeros((len(blocks), gamma + 1), "int32"),
        )
        h = np.asarray(stop_probs, "float64")  # (blocks, gamma + 1)
        block_length = token_length = 0.0
        for b, (block, prob, q, p) in enumerate(zip(blocks, probs, qs, ps)):
            _, h_paper, _ = paper_algorithm_2(block, q, p)
            # float32: h_i = r / (r + 1 - w_i) loses ~1e-6 where w_i ~ 1.
            np.testing.assert_allclose(h[b, 1:], h_paper[1:], atol=1e-5)
            # P(tau >= i) = 1 - prod_{j >= i} (1 - h_j).
            block_length += prob * sum(
                1.0 - np.prod(1.0 - h[b, i:]) for i in range(1, gamma + 1)
            )
            ratios = [min(1.0, p[i][block[i]] / q[i][block[i]]) for i in range(gamma)]
            token_length += prob * sum(np.cumprod(ratios))
        assert block_length >= token_length - 1e-5, (block_length, token_length)
        gains.append(block_length - token_length)
    if point_mass:
        # A point-mass draft has one block, and no verifier can keep x_1 .. x_i
        # more often than the target emits them (w_i): both reach that bound.
        np.testing.assert_allclose(gains, 0.0, atol=1e-5)
    else:
        assert max(gains) > 1e-3  # not vacuous: block verification gains


def test_sampler_option_is_validated_and_serialized():
    import keras_hub

    import keras_specdec
    from keras_specdec import drafts

    unigram = drafts.UnigramDraft(np.ones(8))
    assert keras_specdec.SpeculativeSampler(unigram, 2).verification == "block"
    sampler = keras_specdec.SpeculativeSampler(unigram, 2, verification="token")
    assert sampler.get_config()["verification"] == "token"
    restored = keras_hub.samplers.get(keras_hub.samplers.serialize(sampler))
    assert restored.verification == "token"
    with pytest.raises(ValueError, match='`verification` must be "token"'):
        keras_specdec.SpeculativeSampler(unigram, 2, verification="tree")


def test_round_of_size_zero_is_a_plain_step():
    """gamma = 0 (prompt lookup with no match): the token is drawn from p."""
    p = np.array([[[0.0, 1.0, 0.0]], [[0.0, 0.0, 1.0]]], "float32")
    output, num_accepted = rejection.block_rejection_sample(
        np.zeros((2, 0), "int32"),
        np.zeros((2, 0, 3), "float32"),
        p,
        np.zeros((2, 1), bool),
        np.zeros((2, 1), "int32"),
        keras.random.SeedGenerator(0),
        num_proposed=np.zeros(2, "int32"),
    )
    np.testing.assert_array_equal(np.asarray(num_accepted), [0, 0])
    np.testing.assert_array_equal(np.asarray(output), [[1], [2]])
