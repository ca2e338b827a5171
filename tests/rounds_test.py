"""The round's phases on literal cases, without `generate()`.

A model-free "successor" model (next token = this token + 1) stands in for
both draft and target, so every expected token is written out by hand.
"""

import numpy as np
from keras import ops
from keras_hub.samplers import GreedySampler

from keras_specdec import models, rounds
from keras_specdec.drafts import Draft

VOCAB = 16


class Successor(Draft):
    """Next-token logits peaked at (token + step) mod VOCAB."""

    vocabulary_size = VOCAB

    def __init__(self, step=1):
        self.step = step

    def decode(self, state, token_ids, index):
        following = (ops.cast(token_ids, "int32") + self.step) % VOCAB
        return 10.0 * ops.one_hot(following, VOCAB), state


def setup_for(target, draft, batch, max_length, gamma, stop_token_ids=None):
    return rounds.RoundSetup(
        target=None if target is None else models.adapt(target),
        draft=None if draft is None else models.adapt(draft),
        base_sampler=GreedySampler(),
        max_length=max_length,
        forced=ops.zeros((batch, max_length + gamma), "bool"),
        target_axes=(),
        draft_axes=(),
        stop_token_ids=stop_token_ids,
    )


def state_for(tokens, index, gamma):
    tokens = np.asarray(tokens, "int32")
    tokens = np.concatenate([tokens, np.zeros((len(tokens), gamma), "int32")], 1)
    return rounds.RoundState(
        tokens=ops.convert_to_tensor(tokens),
        index=ops.convert_to_tensor(np.asarray(index, "int32")),
        target_state=(),
        draft_state=(),
        stats=rounds.SpeculativeStats.zeros(),
        schedule_state=ops.zeros((), "int32"),
    )


def as_list(x):
    return np.asarray(x).tolist()


def test_perfect_match_prefix_writes_accepted_then_target_token():
    # vLLM's test_perfect_match shape: draft [1, 2, 3], target argmax
    # [1, 5, ...]: the first proposal is accepted, 5 replaces 2, the row
    # moves by 2.
    setup = setup_for(None, None, 1, 10, 3)
    state = state_for([[9, 0, 0, 0, 0, 0, 0, 0, 0, 0]], [1], 3)
    target_logits = 10.0 * np.eye(VOCAB, dtype="float32")[[[1, 5, 6, 7]]]
    output, num_accepted = rounds.accept(
        setup, state, np.array([[1, 2, 3]]), None, target_logits, np.array([3]), None
    )
    assert as_list(num_accepted) == [1]
    state, all_accepted = rounds.commit(
        setup, state, output, num_accepted, np.array([3]), np.array([True])
    )
    assert as_list(state.tokens[0, :4]) == [9, 1, 5, 0]
    assert as_list(state.index) == [3]
    assert not bool(all_accepted)
    stats = state.stats
    assert [int(stats.draft_tokens), int(stats.accepted_tokens)] == [2, 1]
    assert int(stats.emitted_tokens) == 2


def test_all_accepted_adds_the_bonus_token():
    setup = setup_for(None, None, 1, 10, 3)
    state = state_for([[9] + [0] * 9], [1], 3)
    target_logits = 10.0 * np.eye(VOCAB, dtype="float32")[[[1, 2, 3, 4]]]
    output, num_accepted = rounds.accept(
        setup, state, np.array([[1, 2, 3]]), None, target_logits, np.array([3]), None
    )
    state, all_accepted = rounds.commit(
        setup, state, output, num_accepted, np.array([3]), np.array([True])
    )
    assert as_list(state.tokens[0, :6]) == [9, 1, 2, 3, 4, 0]
    assert as_list(state.index) == [5] and bool(all_accepted)


def test_ragged_rows_advance_by_their_own_counts():
    # Row 0 at position 2 accepts everything (+4), row 1 at position 5
    # accepts nothing (+1), row 2 judges no proposal (num_proposed 0: +1,
    # the target's token), row 3 is inactive (does not move).
    gamma, max_length = 3, 12
    setup = setup_for(Successor(), Successor(), 4, max_length, gamma)
    tokens = [[1, 2] + [0] * 10, [1, 2, 3, 4, 5] + [0] * 7]
    tokens += [[7] * 3 + [0] * 9, [4] * 12]
    state = state_for(tokens, [2, 5, 3, 12], gamma)
    state, (draft_token_ids, _) = rounds.propose(setup, state, gamma, None)
    assert as_list(draft_token_ids[:3]) == [[3, 4, 5], [6, 7, 8], [8, 9, 10]]
    # Row 1's target disagrees: make it predict +2 by overwriting its logits.
    state, target_logits = rounds.verify(setup, state, gamma)
    target_logits = np.asarray(target_logits).copy()
    target_logits[1] = 10.0 * np.eye(VOCAB, dtype="float32")[[7, 8, 9, 10]]
    num_proposed = np.array([3, 3, 0, 0], "int32")
    active = np.array([True, True, True, False])
    output, num_accepted = rounds.accept(
        setup, state, draft_token_ids, None, target_logits, num_proposed, None
    )
    assert as_list(num_accepted[:3]) == [3, 0, 0]
    state, _ = rounds.commit(setup, state, output, num_accepted, num_proposed, active)
    assert as_list(state.index) == [6, 6, 4, 12]
    assert as_list(state.tokens[0, :6]) == [1, 2, 3, 4, 5, 6]
    assert as_list(state.tokens[1, :6]) == [1, 2, 3, 4, 5, 7]
    assert as_list(state.tokens[2, :4]) == [7, 7, 7, 8]
    assert as_list(state.tokens[3, :12]) == [4] * 12


def test_verify_window_near_max_length_is_realigned_per_row():
    # A row one position before max_length: its chunk starts earlier, and
    # the logits still predict index, index + 1, ... (clamped at the end).
    gamma, max_length = 3, 8
    setup = setup_for(Successor(), Successor(), 2, max_length, gamma)
    tokens = [[1, 2, 3, 4, 5, 6, 7, 0], [1, 2, 0, 0, 0, 0, 0, 0]]
    state = state_for(tokens, [7, 2], gamma)
    _, target_logits = rounds.verify(setup, state, gamma)
    predicted = np.argmax(np.asarray(target_logits), -1)
    assert predicted[0, 0] == 8  # after token 7 at position 6
    assert predicted[1, 0] == 3  # after token 2 at position 1


def test_row_limits_stop_after_the_last_rows_first_stop_token():
    setup = setup_for(None, None, 2, 10, 2, stop_token_ids=(9,))
    tokens = [[1, 9, 3, 4, 0, 0, 0, 0, 0, 0], [1, 2, 3, 9, 5, 0, 0, 0, 0, 0]]
    state = state_for(tokens, [4, 5], 2)
    # Both rows stopped (positions 1 and 3): the output ends after 3.
    assert as_list(rounds.row_limits(setup, state)) == [4, 4]
    assert as_list(rounds.active_rows(setup, state)) == [False, False]
    state = state._replace(index=ops.convert_to_tensor(np.array([4, 3], "int32")))
    # Row 1 has not produced its stop yet: everyone runs to max_length.
    assert as_list(rounds.row_limits(setup, state)) == [10, 10]


def test_row_limits_see_stop_ids_in_the_starting_buffer():
    # KerasHub's loop condition reads the whole buffer: with stop id 0 (the
    # padding id) every row that still has padding is done at once.
    prompt = np.array([[1, 2, 0, 0, 0, 0], [3, 0, 0, 0, 0, 0]], "int32")
    forced = np.array([[1, 1, 0, 0, 0, 0], [1, 0, 0, 0, 0, 0]], bool)
    setup = setup_for(None, None, 2, 6, 2, stop_token_ids=(0,))._replace(
        forced=ops.pad(ops.convert_to_tensor(forced), [[0, 0], [0, 2]]),
        prompt=ops.convert_to_tensor(prompt),
    )
    state = state_for(prompt, [2, 1], 2)
    assert as_list(rounds.row_limits(setup, state)) == [0, 0]
    assert as_list(rounds.output_tokens(setup, state, prompt)) == prompt.tolist()
    # A full-length prompt has no padding: that row is never done, so every
    # row runs to max_length (KerasHub's loop does not stop either).
    prompt[1] = [3, 4, 5, 6, 7, 8]
    forced[1] = True
    setup = setup._replace(
        forced=ops.pad(ops.convert_to_tensor(forced), [[0, 0], [0, 2]]),
        prompt=ops.convert_to_tensor(prompt),
    )
    state = state_for(prompt, [2, 6], 2)
    assert as_list(rounds.row_limits(setup, state)) == [6, 6]


def test_tokens_after_a_stop_token_are_not_emitted():
    # Stop id 4. Row 0 accepts [1, 4, 3] and gets the bonus token 5: it
    # decides 4 tokens, but only 1 and the stop token 4 are returned.
    # Row 1 stopped in an earlier round (4 at position 1): what it decides
    # now is not returned either.
    setup = setup_for(None, None, 2, 10, 3, stop_token_ids=(4,))
    state = state_for([[9] + [0] * 9, [9, 4] + [0] * 8], [1, 2], 3)
    target_logits = 10.0 * np.eye(VOCAB, dtype="float32")[
        [[1, 4, 3, 5], [1, 2, 3, 5]]
    ]
    draft = np.array([[1, 4, 3], [1, 2, 3]])
    output, num_accepted = rounds.accept(
        setup, state, draft, None, target_logits, np.array([3, 3]), None
    )
    state, _ = rounds.commit(
        setup, state, output, num_accepted, np.array([3, 3]), np.array([True, True])
    )
    assert as_list(state.tokens[0, :5]) == [9, 1, 4, 3, 5]
    assert int(state.stats.accepted_tokens) == 6
    assert int(state.stats.emitted_tokens) == 2
