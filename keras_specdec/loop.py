"""The decoding loop around the rounds: its first state and one iteration.

`SpeculativeSampler.__call__` is `start` -> `while_loop(run_round)` ->
`rounds.output_tokens`. `run_round` holds the round-size policy (the
schedule's gamma, rows near their limit, capped drafts, the `switch` over
verify sizes); the phases are `keras_specdec.rounds`'.
"""

import jax
from keras import ops

from keras_specdec import rejection
from keras_specdec.models import TargetView, window
from keras_specdec.rounds import (
    RoundState,
    SpeculativeStats,
    _adjusted,
    judge,
    propose,
    row_limits,
    speculative_round,
)


def start(
    setup,
    next,
    prompt,
    cache,
    index,
    hidden_states,
    target_state,
    gamma,
    seed,
    schedule,
):
    """The `RoundState` before the first round.

    1. Each row starts at its own first non-prompt position (KerasHub's
       `index` is the shortest prompt's length).
    2. The decoding states: the target's from `generate()`'s cache, the
       draft's own (a draft that reads the target sees the prefill's hidden
       states).
    3. Rows with an empty prompt take KerasHub's own first step
       (`plain_step`).

    Args:
        next, prompt, cache, index, hidden_states: as `generate()` hands
            them to the sampler; prompt `(batch, max_length)`.
        target_state: the target's decoding state (its adapter's
            `target_state(cache)`).
        gamma: Python int, the largest round size (buffers are gamma
            positions longer than max_length, so a window of gamma + 1 tokens
            at any index <= max_length is never clamped).
        seed: `(2,)` seed of the empty rows' first token, or None (greedy).
        schedule: the gamma schedule (`keras_specdec.schedules`).

    Returns:
        `(state, draft_state_axes)`.
    """
    max_length = setup.max_length
    prompt_mask = setup.forced[:, :max_length]
    positions = ops.arange(max_length, dtype="int32")[None, :]
    open_slot = ops.logical_and(
        positions >= ops.cast(index, "int32"), ops.logical_not(prompt_mask)
    )
    row_index = ops.where(
        ops.any(open_slot, axis=-1),
        ops.argmax(ops.cast(open_slot, "int32"), axis=-1),
        max_length,
    )
    row_index = ops.cast(row_index, "int32")  # (batch,)

    first_token, empty = plain_step(setup, next, prompt, cache, row_index, seed)
    tokens = ops.where(
        ops.logical_and(positions == 0, empty[:, None]), first_token[:, None], prompt
    )
    row_index = ops.where(empty, 1, row_index)

    target_hidden, hidden_start, view = (), (), None
    if setup.draft.reads_target:
        hidden_start = row_index - 2  # (batch,) h_{index - 2} predicts index - 1
        view = TargetView(
            hidden_states, ops.zeros_like(row_index), target_state,
            setup.target_axes,
        )  # fmt: skip
        target_hidden = _positions_or_zeros(hidden_states, hidden_start, gamma + 1)
    draft_state = setup.draft.init_state(prompt, prompt_mask, view)
    draft_axes = setup.draft.batch_axes(draft_state, prompt, prompt_mask, view)
    state = RoundState(
        tokens=ops.pad(tokens, [[0, 0], [0, gamma]]),
        index=row_index,
        target_state=target_state,
        draft_state=draft_state,
        stats=SpeculativeStats.zeros()._replace(
            emitted_tokens=ops.sum(ops.cast(empty, "int32"))
        ),
        schedule_state=schedule.init(),
        target_hidden=target_hidden,
        hidden_start=hidden_start,
    )
    return state, draft_axes


def _positions_or_zeros(x, start, size):
    """`x[i, start[i] + j]` for j < size, zeros where the position is < 0.

    Args:
        x: `(batch, length, d)`; start: int32 `(batch,)`; size: Python int.

    Returns:
        `(batch, size, d)`.
    """
    values = window(x, start, size)
    inside = start[:, None] + ops.arange(size, dtype="int32")[None, :] >= 0
    return ops.where(inside[:, :, None], values, ops.zeros_like(values))


def run_round(setup, state, schedule, seeds):
    """One iteration of the loop: the round's size, then its phases.

    4. The round's size (batch level) and each row's proposals: the
       schedule's gamma, fewer near each row's limit, 0 for inactive rows; a
       draft that caps its proposals (prompt lookup with no match) lowers
       them further, and the round takes the smallest verify size covering
       every row (0 being a plain target step). A block draft's proposals
       are made here, once.
    5. Propose, verify, accept, commit. A single verify size: one round of
       that size. Several ("auto", capped drafts): the draft proposes
       round_gamma tokens (a `fori_loop`, buffers of the largest gamma),
       then verify / accept / commit run at the smallest size k in
       `setup.verify_gammas` covering round_gamma (one `lax.switch` branch
       per size holds only those phases).
    6. The schedule learns from the round.

    Args:
        schedule: the gamma schedule.
        seeds: `(gamma + 2, 2)` seeds of this round, or None (greedy).

    Returns:
        The next `RoundState`.
    """
    gamma = max(setup.verify_gammas)
    round_gamma = schedule.next_gamma(state.schedule_state, state.stats)
    limit = row_limits(setup, state)
    active = state.index < limit  # (batch,)
    num_proposed = ops.clip(
        ops.minimum(round_gamma, limit - 1 - state.index), 0, gamma
    )  # (batch,)
    draft, block = setup.draft, None
    if draft.caps_proposals:
        if draft.proposes_block:
            block, num_matched = draft.propose_block(
                state.draft_state, state.tokens, state.index, gamma
            )  # (batch, gamma), (batch,)
        else:
            num_matched = draft.max_proposals(
                state.draft_state, state.tokens, state.index, gamma
            )  # (batch,)
        num_proposed = ops.minimum(num_proposed, num_matched)
        round_gamma = ops.max(num_proposed)

    if len(setup.verify_gammas) == 1:
        state, all_accepted = speculative_round(
            setup, state, gamma, num_proposed, active, seeds, block
        )
    else:
        state, (draft_token_ids, draft_probs) = propose(
            setup, state, gamma, seeds, num_steps=round_gamma, block=block
        )

        def judge_at_size(k):
            def run(state, draft_token_ids, draft_probs, num_proposed, active,
                    seeds):  # fmt: skip
                return judge(
                    setup, state, k, draft_token_ids, draft_probs, num_proposed,
                    active, seeds,
                )  # fmt: skip

            return run

        sizes = ops.convert_to_tensor(setup.verify_gammas, "int32")
        bucket = ops.sum(ops.cast(sizes < round_gamma, "int32"))
        state, all_accepted = ops.switch(
            bucket,
            [judge_at_size(k) for k in setup.verify_gammas],
            state,
            draft_token_ids,
            draft_probs,
            num_proposed,
            active,
            seeds,
        )
    schedule_state = schedule.update(state.schedule_state, all_accepted)
    return state._replace(schedule_state=schedule_state)


def plain_step(setup, next, prompt, cache, index, seed):
    """KerasHub's own first step for rows with an empty prompt.

    A row whose first undecided position is 0 has no token before it to
    predict from. KerasHub's loop, at index 0, calls the model's `next` at
    cache index -1 (which XLA clamps to 0: the padding token at position 0)
    and writes the drawn token at position 0. To match it exactly, those
    rows take that very step here (the model's own `next`, full batch); the
    cache it writes is not kept: the first verify pass of the row rewrites
    position 0 anyway, as KerasHub's next step does.

    Args:
        next: the `next(prompt, cache, index)` that `generate()` passes to
            the sampler.
        prompt: `(batch, max_length)`; cache: the target's cache as given.
        index: int32 `(batch,)`, each row's first undecided position.
        seed: a seed `(2,)` for the draw, or None (greedy).

    Returns:
        `(token, empty)`: int `(batch,)` the drawn token at position 0 for
        empty rows (0 elsewhere), bool `(batch,)` which rows are empty. The
        model call runs only when some row is empty (`lax.cond`).
    """
    empty = index == 0

    def step():
        logits, _, _ = next(prompt, cache, ops.zeros((), "int32"))  # (batch, vocab)
        probs = _adjusted(setup, logits)
        if seed is None:
            token = ops.argmax(probs, axis=-1)
        else:
            token = rejection.sample_categorical(probs, seed)
        return ops.cast(token, prompt.dtype)

    token = jax.lax.cond(ops.any(empty), step, lambda: ops.zeros_like(prompt[:, 0]))
    return token, empty
