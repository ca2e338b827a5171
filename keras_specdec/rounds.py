"""One round of speculative decoding as the paper's phases over named state.

A round (Leviathan et al., 2023, Algorithm 1, batched with one position per
row) is four module-level functions, each taking and returning plain tensors
or the `RoundState` below:

1. `propose`: the draft proposes k tokens per row, one draft call each
   (`draft_token_ids`, `draft_probs` q);
2. `verify`: the target scores the k + 1 positions of every row in ONE
   forward pass (`target_logits`, realigned per row near `max_length`);
3. `accept`: rejection sampling (token by token, or block verification;
   greedy: matching) decides per row how many proposals are accepted
   (`num_accepted`) and the recovered or bonus token after them;
4. `commit`: writes each row's `num_accepted + 1` decided tokens and moves
   that row's index by as many, independently of the other rows.

`speculative_round` chains them; `SpeculativeSampler.__call__` runs rounds in
a `while_loop` until every row is full or (with stop tokens) done. Shapes are
static: k is a Python int, the number of proposals a row actually judges is
the per-row tensor `num_proposed`.

Glossary:

- *batch*, *max_length*: the `generate()` buffer's shape.
- *index*: per row, the first position that is not decided yet: every
  position before it holds the row's prompt or a token the target's process
  decided. Every model call of a row runs at that row's own cache position
  (`models.ModelAdapter.decode_rows`).
- *forced*: prompt positions; their tokens are never overwritten (a window
  that reaches a prompt token accepts it without a test).
- *active*: a row that still needs tokens this round (not full; when all rows
  have stopped, not past the position where the output ends). Inactive rows
  judge nothing (`num_proposed` 0) and do not move.
- *num_proposed*: per row, the proposals of this round it judges (<= k):
  fewer near `max_length`, 0 for inactive rows.
- *accepted / recovered / bonus*: the leading proposals that pass the test;
  the token drawn from norm(max(0, p - q)) at the first rejection; the token
  drawn from p after all proposals were accepted.
"""

from typing import Any, NamedTuple

from keras import ops
from keras_hub.src.utils.tensor_utils import any_equal

from keras_specdec import model_utils, rejection, sharding
from keras_specdec.models import TargetView, window
from keras_specdec.phases import phase


class SpeculativeStats(NamedTuple):
    """Counters of one `generate()` call (int32 scalars)."""

    target_calls: Any  # () verification forward passes of the target
    row_target_calls: Any  # () active rows summed over those passes
    proposed_tokens: Any  # () proposals made (num_proposed, not forced)
    draft_tokens: Any  # () proposals judged: up to and incl. the first rejection
    accepted_tokens: Any  # () proposals accepted
    emitted_tokens: Any  # () new tokens decided (accepted + recovered + bonus)

    @classmethod
    def zeros(cls):
        return cls(*(ops.zeros((), "int32") for _ in cls._fields))

    @classmethod
    def from_vector(cls, vector):
        """From the `(6,)` int32 vector the sampler stores them in."""
        return cls(*(vector[i] for i in range(len(cls._fields))))

    def to_vector(self):
        return ops.stack([ops.cast(x, "int32") for x in self])  # (6,)

    def __add__(self, other):
        return SpeculativeStats(*(a + b for a, b in zip(self, other)))


class RoundState(NamedTuple):
    """What a round reads and writes (the `while_loop`'s variables)."""

    tokens: Any  # (batch, max_length + gamma) decided tokens, then scratch
    index: Any  # (batch,) int32, each row's first undecided position
    target_state: Any  # target's cache (`ModelAdapter.target_state`)
    draft_state: Any  # draft's cache / state (`ModelAdapter.init_state`)
    stats: SpeculativeStats  # counters of this call
    schedule_state: Any  # () int32, the gamma schedule's state
    # Drafts that read the target (`draft.reads_target`) only, else ():
    target_hidden: Any = ()  # (batch, gamma + 1, hidden_dim) the last verify
    #   pass's target hidden states (the prefill's before the first round)
    hidden_start: Any = ()  # (batch,) int32 position of target_hidden[:, 0]


class RoundSetup(NamedTuple):
    """What stays fixed during one `generate()` call."""

    target: Any  # the target's `models.ModelAdapter`
    draft: Any  # the draft's `models.ModelAdapter`
    base_sampler: Any  # the KerasHub sampler whose distribution is kept
    max_length: int  # the generate() buffer length
    forced: Any  # (batch, max_length + gamma) bool, True on prompt tokens
    target_axes: Any  # batch axis of each target state leaf
    draft_axes: Any  # batch axis of each draft state leaf
    stop_token_ids: Any  # tuple of ints or None
    # Draft steps 1 .. k - 1 in a `fori_loop` (one compiled draft call)
    # instead of unrolled (k - 1 calls). "auto" loops, to the round's gamma
    # (`propose(num_steps=...)`): one propose serves every round size.
    # A fixed gamma unrolls: the loop cost 6% at gamma 8 (code pair, CPU,
    # T=0 and T=1; equal at gamma 4).
    loop_draft_steps: bool = False
    # The sizes a round can verify at (`judge`): [gamma] for a fixed gamma;
    # "auto" and capped drafts hold one verify pass per size and `switch`
    # to the smallest one covering the round's gamma.
    verify_gammas: tuple = ()
    # (batch, max_length) the buffer `generate()` started from: with stop
    # tokens, KerasHub's loop also sees the stop ids in its undecided
    # positions (a stop id equal to the padding id); None counts none.
    prompt: Any = None
    # "token": Leviathan et al.'s token-by-token test (`rejection_sample`);
    # "block": block verification (`block_rejection_sample`). Greedy
    # decoding matches argmaxes either way.
    verification: str = "token"
    # Under `keras.distribution`: which states keep their rows replicated
    # (`sharding.BatchLayouts`), or None.
    batch_layouts: Any = None


# ---------------------------------------------------------------------------
# Per-row windows of a (batch, length) buffer.


def write_window(x, start, values, write):
    """`x[i, start[i] + j] = values[i, j]` where `write[i, j]`, per row.

    Args:
        x: `(batch, length)`.
        start: int32 `(batch,)`.
        values: `(batch, size)`, cast to x's dtype.
        write: bool `(batch, size)`.

    Returns:
        `(batch, length)`. Positions outside the buffer are not written.
    """
    length = ops.shape(x)[1]
    size = ops.shape(values)[1]
    offset = ops.arange(length, dtype="int32")[None, :] - start[:, None]
    inside = ops.logical_and(offset >= 0, offset < size)  # (batch, length)
    offset = ops.clip(offset, 0, size - 1)
    value = ops.take_along_axis(ops.cast(values, x.dtype), offset, axis=1)
    keep = ops.logical_and(inside, ops.take_along_axis(write, offset, axis=1))
    return ops.where(keep, value, x)


# ---------------------------------------------------------------------------
# Which rows still need tokens.


def row_limits(setup, state):
    """Per row, the position before which the row must be decided.

    `max_length`, unless stop tokens are given and KerasHub's loop is known
    to have stopped earlier (`_stop_end`): then that position, for every
    row (rows that stopped earlier still decide the tokens up to there, as
    plain generate does).

    Returns:
        int32 `(batch,)`.
    """
    tokens, index = state.tokens, state.index
    batch = ops.shape(tokens)[0]
    full = ops.full((batch,), setup.max_length, dtype="int32")
    if setup.stop_token_ids is None:
        return full
    end, known = _stop_end(setup, tokens, index)
    return ops.where(known, ops.minimum(end, setup.max_length), full)


def _stop_end(setup, tokens, index):
    """`(end, known)`: where KerasHub's loop stops, int32 `()`, and whether
    the rows decided so far already fix it, bool `()`.

    KerasHub's loop runs one position t at a time (all rows) and stops
    before position t when every row is *done*: its buffer holds a stop id
    at a non-prompt position (`any_equal(prompt, stop_token_ids, ~mask)`).
    Positions before t hold the tokens decided so far, positions from t on
    still hold the starting buffer, whose padding is a stop id when the
    stop id equals the padding id. So row r is done at t when a decided
    token before t, or a starting-buffer token from t on, is a stop id.
    Here each row is decided up to its own index: at t <= index a row's
    state is known, beyond it only if it is already done. The end is the
    first t at which every row is done, once no earlier t is still unknown
    for some row. Unknown: `known` False (`end` is then meaningless).
    """
    max_length = setup.max_length
    tokens = tokens[:, :max_length]
    positions = ops.arange(max_length, dtype="int32")[None, :]
    new = ops.logical_not(setup.forced[:, :max_length])  # (batch, max_length)
    decided_stop = ops.cast(
        any_equal(
            tokens,
            setup.stop_token_ids,
            ops.logical_and(new, positions < index[:, None]),
        ),
        "int32",
    )  # (batch, max_length)
    # done[r, t]: a decided stop id at a position < t ...
    done = (ops.cumsum(decided_stop, axis=-1) - decided_stop) > 0
    if setup.prompt is not None:
        # ... or a stop id of the starting buffer at a position >= t.
        start_stop = ops.cast(
            any_equal(setup.prompt, setup.stop_token_ids, new), "int32"
        )
        stop_from = ops.flip(ops.cumsum(ops.flip(start_stop, -1), axis=-1), -1) > 0
        done = ops.logical_or(done, stop_from)
    known = ops.logical_or(done, positions <= index[:, None])  # (batch, max_length)
    all_done = ops.all(done, axis=0)  # (max_length,)
    event = ops.logical_or(all_done, ops.logical_not(ops.all(known, axis=0)))
    first = ops.cast(ops.argmax(ops.cast(event, "int32")), "int32")
    any_event = ops.any(event)
    end = ops.where(any_event, first, max_length)
    # No event: every position is known and no row stops: the full length.
    return end, ops.logical_or(ops.logical_not(any_event), ops.take(all_done, first))


def active_rows(setup, state):
    """bool `(batch,)`: rows that still need tokens."""
    return state.index < row_limits(setup, state)


def output_tokens(setup, state, prompt):
    """The `(batch, max_length)` result: decided tokens, the prompt buffer
    elsewhere; with stop tokens, nothing after KerasHub's end position."""
    max_length = setup.max_length
    tokens = state.tokens[:, :max_length]
    positions = ops.arange(max_length, dtype="int32")[None, :]
    decided = ops.logical_or(
        positions < state.index[:, None], setup.forced[:, :max_length]
    )
    if setup.stop_token_ids is not None:
        # The loop ran until every row is inactive: the end is known.
        end, _ = _stop_end(setup, state.tokens, state.index)
        decided = ops.logical_and(decided, positions < end)
    return ops.where(decided, tokens, prompt)


# ---------------------------------------------------------------------------
# The phases.


def _adjusted(setup, logits):
    return rejection.adjusted_probabilities(logits, setup.base_sampler)


def _seed(seeds, i):
    return None if seeds is None else seeds[i]


@phase("propose")
def propose(setup, state, k, seeds, num_steps=None, block=None):
    """The draft proposes k tokens per row at the row's own position.

    Args:
        setup: `RoundSetup`.
        state: `RoundState`.
        k: Python int, proposals per row (the round's size). With k = 0 the
            draft only catches up on the tokens decided last round (so its
            state has no holes) and proposes nothing.
        seeds: `(>= k, 2)` seeds (seeds[j] draws proposal j), or None for
            greedy decoding.
        num_steps: optional int32 `()` <= k (needs
            `setup.loop_draft_steps`): draft only the first `num_steps`
            proposals (the `fori_loop` runs to it), so one compiled propose
            serves every round size of `"auto"`; slots `num_steps .. k - 1`
            of the results are then scratch, never judged. At most one
            proposal is drawn when `num_steps` <= 1 (proposal 0, from the
            catch-up call every round makes anyway).
        block: for a `proposes_block` draft, int `(batch, >= k)` its
            proposals for this round (`propose_block`, made once per round by
            `run_round`); None asks the draft here.

    Returns:
        `(state, (draft_token_ids, draft_probs))`: tokens hold the proposals
        at `index .. index + k - 1` (scratch until `commit`), the draft state
        advanced; draft_token_ids int `(batch, k)`; draft_probs float32
        `(batch, k, vocab)` q, or None for greedy decoding.
    """
    tokens, index = state.tokens, state.index
    greedy = rejection.is_greedy(setup.base_sampler)
    draft = setup.draft
    if draft.proposes_block:
        return _propose_block(setup, state, k, greedy, block)

    target = None
    if draft.reads_target:
        target = TargetView(
            state.target_hidden, state.hidden_start, state.target_state,
            setup.target_axes,
        )  # fmt: skip
    draft_logits, draft_state = draft.first_logits(
        state.draft_state, tokens, index, setup.forced, setup.draft_axes, target
    )  # (batch, draft vocab)
    if k == 0:
        # A plain step: the draft only caught up on the decided tokens.
        return state._replace(draft_state=draft_state), _no_proposals(
            setup, tokens, greedy
        )
    batch = ops.shape(tokens)[0]
    vocab = setup.target.vocabulary_size

    def draw(j, draft_logits, tokens, draft_token_ids, draft_probs):
        """Proposal j from the draft's logits at position index + j - 1."""
        # Vocabularies that differ only by padding: q over the target's ids.
        draft_logits = model_utils.match_vocabulary(
            draft_logits, vocab
        )  # (batch, target vocab)
        if greedy:
            proposal = ops.argmax(draft_logits, axis=-1)
        else:
            q = _adjusted(setup, draft_logits)  # (batch, vocab)
            proposal = rejection.sample_categorical(q, _seed(seeds, j))
            draft_probs = ops.slice_update(
                draft_probs, (0, j, 0), ops.cast(q, "float32")[:, None, :]
            )
        at = index + j
        proposal = ops.where(
            window(setup.forced, at, 1)[:, 0],
            window(tokens, at, 1)[:, 0],
            ops.cast(proposal, tokens.dtype),
        )  # (batch,)
        tokens = write_window(
            tokens, at, proposal[:, None], ops.ones_like(proposal[:, None], "bool")
        )
        draft_token_ids = ops.slice_update(draft_token_ids, (0, j), proposal[:, None])
        return tokens, draft_token_ids, draft_probs

    draft_token_ids = ops.zeros((batch, k), tokens.dtype)  # (batch, k)
    draft_probs = None if greedy else ops.zeros((batch, k, vocab), "float32")
    tokens, draft_token_ids, draft_probs = draw(
        0, draft_logits, tokens, draft_token_ids, draft_probs
    )

    def step(j, carry):
        """Draft step j >= 1: feed proposal j - 1, draw proposal j."""
        tokens, draft_state, draft_token_ids, draft_probs = carry
        # Past max_length the position is invalid; clamp so the cache write
        # stays inside the cache (those proposals are never judged).
        feed = ops.minimum(index + j - 1, setup.max_length - 1)
        draft_logits, draft_state = draft.next_logits(
            draft_state, tokens, feed, setup.forced, setup.draft_axes
        )
        tokens, draft_token_ids, draft_probs = draw(
            j, draft_logits, tokens, draft_token_ids, draft_probs
        )
        return tokens, draft_state, draft_token_ids, draft_probs

    carry = (tokens, draft_state, draft_token_ids, draft_probs)
    if setup.loop_draft_steps:
        carry = ops.fori_loop(1, k if num_steps is None else num_steps, step, carry)
    else:
        for j in range(1, k):
            carry = step(j, carry)
    tokens, draft_state, draft_token_ids, draft_probs = carry
    return state._replace(tokens=tokens, draft_state=draft_state), (
        draft_token_ids,
        draft_probs,
    )


def _no_proposals(setup, tokens, greedy):
    """`(draft_token_ids, draft_probs)` of a round of size 0 (a plain step):
    int `(batch, 0)` and float32 `(batch, 0, vocab)` (None when greedy)."""
    batch = ops.shape(tokens)[0]
    vocab = setup.target.vocabulary_size
    draft_probs = None if greedy else ops.zeros((batch, 0, vocab), "float32")
    return ops.zeros((batch, 0), tokens.dtype), draft_probs


def _propose_block(setup, state, k, greedy, block=None):
    """`propose` for a draft with `propose_block` (a deterministic draft that
    makes all k proposals in one call, e.g. prompt lookup's copy of the tokens
    after its match): no draft calls, q a point mass on each proposal."""
    tokens, index = state.tokens, state.index
    if k == 0:  # a plain step: nothing to propose
        return state, _no_proposals(setup, tokens, greedy)
    if block is None:
        block, _ = setup.draft.propose_block(state.draft_state, tokens, index, k)
    # Prompt positions inside the window keep their tokens.
    draft_token_ids = ops.where(
        window(setup.forced, index, k),
        window(tokens, index, k),
        ops.cast(block[:, :k], tokens.dtype),
    )  # (batch, k)
    tokens = write_window(
        tokens, index, draft_token_ids, ops.ones_like(draft_token_ids, "bool")
    )
    draft_probs = None
    if not greedy:
        vocab = setup.target.vocabulary_size
        draft_probs = ops.one_hot(draft_token_ids, vocab, dtype="float32")
    return state._replace(tokens=tokens), (draft_token_ids, draft_probs)


@phase("verify")
def verify(setup, state, k):
    """The target scores each row's k + 1 positions in one forward pass.

    Positions index .. index + k are predicted by the tokens at
    index - 1 .. index + k - 1 (each row at its own cache position). Near
    `max_length` a row's chunk starts earlier (re-feeding decided tokens)
    instead of being clamped onto earlier cache slots; its logits are
    realigned so that row j always predicts position index + j. For a draft
    that reads the target, the pass's hidden states are kept
    (`target_hidden`, padded to gamma + 1 positions, from `hidden_start`).

    Returns:
        `(state, target_logits)`, target_logits `(batch, k + 1, vocab)`
        (rows past `max_length` repeat the last valid one).
    """
    index = state.index
    verify_start = ops.minimum(index - 1, setup.max_length - k - 1)  # (batch,)
    token_ids, verify_start, prompt_mask = sharding.target_rows(
        setup,
        window(state.tokens, verify_start, k + 1),  # (batch, k + 1)
        verify_start,
        window(setup.forced, verify_start, k + 1),  # (batch, k + 1)
    )
    target_logits, target_hidden, target_state = setup.target.decode_rows(
        state.target_state, token_ids, verify_start, setup.target_axes, prompt_mask
    )
    state = state._replace(target_state=target_state)
    if setup.draft.reads_target:
        n = ops.shape(state.target_hidden)[1]  # gamma + 1
        target_hidden = ops.cast(target_hidden, state.target_hidden.dtype)
        state = state._replace(
            target_hidden=ops.pad(target_hidden, [[0, 0], [0, n - k - 1], [0, 0]]),
            hidden_start=ops.cast(verify_start, "int32"),
        )
    shift = index - 1 - verify_start  # (batch,)
    rows = ops.minimum(ops.arange(k + 1, dtype="int32")[None, :] + shift[:, None], k)
    target_logits = ops.take_along_axis(target_logits, rows[:, :, None], axis=1)
    return state, target_logits


@phase("accept")
def accept(
    setup, state, draft_token_ids, draft_probs, target_logits, num_proposed, seeds
):
    """Rejection sampling (greedy: argmax matching) of each row's proposals,
    token by token or as a block (`setup.verification`).

    Args:
        draft_token_ids: int `(batch, k)`.
        draft_probs: float32 `(batch, k, vocab)` q, or None (greedy).
        target_logits: `(batch, k + 1, vocab)` from `verify`.
        num_proposed: int32 `(batch,)`, the proposals each row judges.
        seeds: `(>= k + 2, 2)` seeds (k: acceptance uniforms, k + 1: the
            recovered / bonus token), or None (greedy).

    Returns:
        `(output, num_accepted)`: int32 `(batch, k + 1)` accepted proposals
        then the recovered or bonus token at `num_accepted`; int32 `(batch,)`.
    """
    k = ops.shape(draft_token_ids)[1]
    window_forced = window(setup.forced, state.index, k + 1)
    window_tokens = window(state.tokens, state.index, k + 1)
    if draft_probs is None:
        return rejection.greedy_verify(
            draft_token_ids,
            target_logits,
            window_forced,
            window_tokens,
            num_proposed=num_proposed,
        )
    verify_block = setup.verification == "block"
    sample = (
        rejection.block_rejection_sample if verify_block else rejection.rejection_sample
    )
    return sample(
        draft_token_ids,
        draft_probs,
        _adjusted(setup, target_logits),  # (batch, k + 1, vocab)
        window_forced,
        window_tokens,
        seeds[k],
        num_proposed=num_proposed,
        recovery_seed=seeds[k + 1],
    )


@phase("commit")
def commit(setup, state, output, num_accepted, num_proposed, active):
    """Write each active row's num_accepted + 1 decided tokens; move its
    index by as many; count.

    Args:
        output: int `(batch, k + 1)` from `accept`.
        num_accepted: int32 `(batch,)`.
        num_proposed: int32 `(batch,)`.
        active: bool `(batch,)`; inactive rows neither write nor move.

    Returns:
        `(state, all_accepted)`: all_accepted bool `()`, every active row
        accepted every proposal it judged (the heuristic schedule's +2).
    """
    index = state.index
    k = ops.shape(output)[1] - 1
    offsets = ops.arange(k + 1, dtype="int32")[None, :]  # (1, k + 1)
    window_forced = window(setup.forced, index, k + 1)
    decided_now = ops.logical_and(
        ops.logical_and(active[:, None], offsets <= num_accepted[:, None]),
        index[:, None] + offsets < setup.max_length,
    )  # (batch, k + 1)
    tokens = write_window(state.tokens, index, output, decided_now)
    new_index = ops.where(
        active, ops.minimum(index + num_accepted + 1, setup.max_length), index
    )

    new = ops.logical_not(window_forced)
    proposed = ops.logical_and(
        ops.logical_and(new[:, :k], offsets[:, :k] < num_proposed[:, None]),
        active[:, None],
    )
    judged = ops.logical_and(proposed, offsets[:, :k] <= num_accepted[:, None])
    accepted = ops.logical_and(proposed, offsets[:, :k] < num_accepted[:, None])
    emitted = ops.logical_and(new, decided_now)
    if setup.stop_token_ids is not None:
        emitted = ops.logical_and(emitted, _before_stop(setup, state, output, emitted))

    def count(x):
        return ops.sum(ops.cast(x, "int32"))

    stats = state.stats + SpeculativeStats(
        target_calls=ops.ones((), "int32"),
        row_target_calls=count(active),
        proposed_tokens=count(proposed),
        draft_tokens=count(judged),
        accepted_tokens=count(accepted),
        emitted_tokens=count(emitted),
    )
    all_accepted = ops.all(
        ops.logical_or(ops.logical_not(active), num_accepted >= num_proposed)
    )
    state = state._replace(tokens=tokens, index=new_index, stats=stats)
    return state, all_accepted


def _before_stop(setup, state, output, decided):
    """bool `(batch, k + 1)`: the round's output positions that come before
    (or are) the row's first stop token. A row keeps decoding after its
    stop token until the whole batch ends (as in plain `generate()`), and a
    round can decide tokens past a stop token; neither is returned (KerasHub
    masks them), so neither counts as emitted.

    Args:
        output: int `(batch, k + 1)` written at `state.index`.
        decided: bool `(batch, k + 1)`, the new positions the round decides.
    """
    max_length = setup.max_length
    positions = ops.arange(max_length, dtype="int32")[None, :]
    earlier = ops.logical_and(
        ops.logical_not(setup.forced[:, :max_length]),
        positions < state.index[:, None],
    )  # (batch, max_length): decided before this round
    stopped = ops.any(
        any_equal(state.tokens[:, :max_length], setup.stop_token_ids, earlier), axis=1
    )  # (batch,)
    stop_now = ops.cast(any_equal(output, setup.stop_token_ids, decided), "int32")
    after_stop_now = (ops.cumsum(stop_now, axis=1) - stop_now) > 0  # (batch, k + 1)
    return ops.logical_not(ops.logical_or(stopped[:, None], after_stop_now))


def judge(setup, state, k, draft_token_ids, draft_probs, num_proposed, active, seeds):
    """Verify, accept and commit the first k proposals of each row.

    The phases after `propose`, at a static size k: `"auto"` proposes once
    (up to its largest gamma) and runs `judge` at the smallest size covering
    the round's gamma.

    Args:
        k: Python int, the verify pass scores k + 1 positions per row.
        draft_token_ids: int `(batch, >= k)`; only the first k are read.
        draft_probs: float32 `(batch, >= k, vocab)` q, or None (greedy).
        num_proposed: int32 `(batch,)` <= k, proposals each row judges.
        active: bool `(batch,)`.
        seeds: as in `speculative_round`.

    Returns:
        `(state, all_accepted)`.
    """
    draft_token_ids = draft_token_ids[:, :k]  # (batch, k)
    if draft_probs is not None:
        draft_probs = draft_probs[:, :k]  # (batch, k, vocab)
    state, target_logits = verify(setup, state, k)
    output, num_accepted = accept(
        setup, state, draft_token_ids, draft_probs, target_logits, num_proposed, seeds
    )
    return commit(setup, state, output, num_accepted, num_proposed, active)


def speculative_round(setup, state, k, num_proposed, active, seeds, block=None):
    """One complete round of size k: propose, verify, accept, commit.

    Args:
        k: Python int, proposals drafted per row (static).
        num_proposed: int32 `(batch,)` <= k, proposals each row judges.
        active: bool `(batch,)`.
        seeds: `(gamma + 2, 2)` seeds or None (greedy); seeds[j] draws
            proposal j, seeds[k] and seeds[k + 1] the acceptance uniforms and
            the recovered / bonus token (the order a fixed-gamma round of
            size k consumes them in).
        block: a block draft's proposals (`propose`), or None.

    Returns:
        `(state, all_accepted)`.
    """
    state, (draft_token_ids, draft_probs) = propose(setup, state, k, seeds, block=block)
    return judge(
        setup, state, k, draft_token_ids, draft_probs, num_proposed, active, seeds
    )
