"""Model-free drafts: the paper's unigram and bigram "trivial" drafts (§4.1)
and prompt lookup, behind a small interface users can implement themselves.

A draft is anything `SpeculativeSampler(draft=...)` can ask for next-token
logits. Subclass `Draft` and implement:

- `vocabulary_size`: int, must equal the target's.
- `init_state(token_ids, padding_mask)`: the draft's state for a batch
  (any nest of tensors with static shapes; `()` if none). `token_ids` is the
  `(batch, max_length)` buffer `generate()` starts from.
- `decode(state, token_ids, index)`: `token_ids` `(batch, chunk)` sit at
  positions `index .. index + chunk - 1`; return `(logits, state)` with logits
  `(batch, chunk, vocab)`, row i being the draft's next-token logits after
  position `index + i`. Any distribution is fine for exactness: the sampler
  samples proposals from q = the base sampler's adjustment of these logits
  and accepts with min(1, p/q), so the output follows the target whatever q is
  (a good q just means more accepted tokens).
- optional `max_proposals(state, tokens, index, gamma)`: int32 `(batch,)`,
  how many proposals each row may make this round (default gamma). A draft
  that knows it has nothing to propose (prompt lookup with no match) returns
  0 and the round costs about one plain target step.
- optional `propose_block(state, tokens, index, gamma)`: a deterministic
  draft's whole round at once, `(draft_token_ids (batch, gamma),
  num_proposed (batch,))`; q is then a point mass on each proposal and
  `decode` is not called during rounds (prompt lookup copies the tokens
  after its match this way).
- `variables`: keras Variables the draft reads (passed to the compiled
  program as arguments, not baked in as constants).
- `get_config()` / `from_config()` for serialization.

All computations are `keras.ops` with static shapes: they run inside the one
XLA program of `generate()`.
"""

import keras
import numpy as np
from keras import ops

# Logit of tokens a draft never proposes: finite so no inf - inf NaNs appear
# in softmax or temperature scaling, and far below any real logit.
NEVER = -1e9


class Draft:
    """Base class of model-free drafts (see the module docstring).

    The optional hooks are declared by two class attributes, set for you when
    a subclass defines the method: `caps_proposals` (`max_proposals`) and
    `proposes_block` (`propose_block`).
    """

    vocabulary_size = None
    caps_proposals = False
    proposes_block = False

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "max_proposals" in cls.__dict__:
            cls.caps_proposals = True
        if "propose_block" in cls.__dict__:
            cls.proposes_block = True

    @property
    def variables(self):
        return []

    def init_state(self, token_ids, padding_mask):
        return ()

    def decode(self, state, token_ids, index):
        raise NotImplementedError

    def max_proposals(self, state, tokens, index, gamma):
        """Per row, the most proposals worth making at `index` (<= gamma).

        Args:
            state: the draft's state.
            tokens: `(batch, length)` the sampler's buffer; positions before
                each row's index are decided, later ones are scratch.
            index: int32 `(batch,)`, each row's first undecided position.
            gamma: Python int, the round's largest size.

        Returns:
            int32 `(batch,)`. The default, gamma for every row, keeps rounds
            as they are; the sampler never asks this of model drafts.
        """
        return ops.full(ops.shape(index), gamma, dtype="int32")

    def get_config(self):
        return {}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def _as_token_array(tokens, vocabulary_size, draft_name):
    """Concatenate token ids given as an array, a list of arrays or a
    `tf.data.Dataset` of token arrays into one flat int64 numpy array, after
    checking they can be counted: at least one token, integer ids in
    `[0, vocabulary_size)`."""
    fit = f"{draft_name}.fit"
    vocabulary_size = _check_vocabulary_size(vocabulary_size, fit)
    if hasattr(tokens, "as_numpy_iterator"):
        tokens = list(tokens.as_numpy_iterator())
    if isinstance(tokens, (list, tuple)):
        parts = [np.asarray(t).reshape(-1) for t in tokens]
        tokens = np.concatenate(parts) if parts else np.zeros((0,), "int64")
    tokens = np.asarray(tokens).reshape(-1)
    if tokens.size == 0:
        raise ValueError(
            f"{fit} got no tokens: pass a non-empty array (or list of arrays, "
            "or tf.data.Dataset) of token ids to count."
        )
    if not np.issubdtype(tokens.dtype, np.integer):
        if not np.issubdtype(tokens.dtype, np.floating) or np.any(
            tokens != np.round(tokens)
        ):
            raise ValueError(
                f"{fit} needs integer token ids, got dtype {tokens.dtype}: "
                "tokenize the text first (e.g. with the target's tokenizer)."
            )
    tokens = tokens.astype("int64")
    bad = (tokens < 0) | (tokens >= vocabulary_size)
    if np.any(bad):
        raise ValueError(
            f"{fit}: token id {int(tokens[bad][0])} is outside the vocabulary "
            f"[0, {vocabulary_size}) ({int(bad.sum())} ids out of range). Pass the "
            "target's `vocabulary_size` (e.g. "
            "`target.backbone.vocabulary_size`) and ids from the same tokenizer."
        )
    return tokens


def _check_vocabulary_size(vocabulary_size, where):
    if isinstance(vocabulary_size, bool) or not isinstance(
        vocabulary_size, (int, np.integer)
    ):
        raise ValueError(
            f"{where}: `vocabulary_size` must be a positive int (the target's "
            f"vocabulary size), got {vocabulary_size!r}."
        )
    if vocabulary_size < 1:
        raise ValueError(
            f"{where}: `vocabulary_size` must be positive (the target's "
            f"vocabulary size), got {vocabulary_size}."
        )
    return int(vocabulary_size)


@keras.saving.register_keras_serializable(package="keras_specdec")
class UnigramDraft(Draft):
    """Proposes tokens from fixed unigram frequencies (the paper's unigram
    draft): q does not depend on the prefix, c ~ 0.

    Args:
        probabilities: `(vocabulary_size,)` non-negative weights.

    Example:

    >>> draft = UnigramDraft.fit(np.array([1, 1, 2, 3]), vocabulary_size=5)
    >>> np.round(draft.probabilities.astype(float), 2).tolist()
    [0.0, 0.5, 0.25, 0.25, 0.0]
    """

    def __init__(self, probabilities):
        probabilities = np.asarray(probabilities, dtype="float64")
        if probabilities.ndim != 1 or probabilities.shape[0] < 1:
            raise ValueError(
                "UnigramDraft needs `probabilities` of shape (vocabulary_size,), "
                f"got shape {probabilities.shape}."
            )
        if not np.all(np.isfinite(probabilities)) or np.any(probabilities < 0):
            raise ValueError(
                "UnigramDraft `probabilities` must be finite and non-negative "
                "(weights or counts; they are normalised here), got "
                f"min {np.min(probabilities)}, max {np.max(probabilities)}."
            )
        if probabilities.sum() <= 0:
            raise ValueError(
                "UnigramDraft `probabilities` are all zero: give at least one "
                "token a positive weight (e.g. `np.ones(vocabulary_size)` for "
                "uniform, or `UnigramDraft.fit(token_ids, vocabulary_size)`)."
            )
        self.probabilities = (probabilities / probabilities.sum()).astype("float32")
        self.vocabulary_size = int(self.probabilities.shape[0])
        self._log_probs = keras.Variable(
            np.log(
                np.maximum(self.probabilities, 1e-30),
                where=self.probabilities > 0,
                out=np.full_like(self.probabilities, NEVER),
            ),
            trainable=False,
            dtype="float32",
            name="unigram_log_probs",
        )

    @classmethod
    def fit(cls, tokens, vocabulary_size):
        """Fit from token ids (array, list of arrays or a tf.data pipeline)."""
        tokens = _as_token_array(tokens, vocabulary_size, "UnigramDraft")
        return cls(np.bincount(tokens, minlength=vocabulary_size))

    @property
    def variables(self):
        return [self._log_probs]

    def decode(self, state, token_ids, index):
        batch, chunk = ops.shape(token_ids)
        logits = ops.broadcast_to(
            ops.convert_to_tensor(self._log_probs), (batch, chunk, self.vocabulary_size)
        )
        return logits, state

    def get_config(self):
        return {"probabilities": self.probabilities.tolist()}


@keras.saving.register_keras_serializable(package="keras_specdec")
class BigramDraft(Draft):
    """Proposes the next token from bigram statistics P(x_t | x_{t-1}), kept
    sparse: the `top_k` most frequent successors of each token (so it scales
    to large vocabularies); q is those renormalised frequencies, a real
    distribution, so sampling stays exact. A token never seen as a
    predecessor proposes from the unigram distribution's top-k.

    Args:
        next_ids: int `(vocabulary_size, top_k)` successor ids.
        next_probs: float `(vocabulary_size, top_k)` their non-negative
            weights, normalised per row here; a slot of weight 0 is unused
            (whatever id it holds), and a slot id that repeats in a row adds
            its weights.

    >>> draft = BigramDraft.fit(np.array([1, 2, 1, 2, 1, 3]), vocabulary_size=4,
    ...                         top_k=2)
    >>> draft.next_ids[1].tolist()
    [2, 3]
    >>> np.round(draft.next_probs[1].astype(float), 3).tolist()
    [0.667, 0.333]
    """

    def __init__(self, next_ids, next_probs):
        next_ids = np.asarray(next_ids)
        next_probs = np.asarray(next_probs, dtype="float64")
        if next_ids.ndim != 2 or next_ids.shape != next_probs.shape:
            raise ValueError(
                "BigramDraft needs `next_ids` and `next_probs` of the same shape "
                f"(vocabulary_size, top_k), got {next_ids.shape} and "
                f"{next_probs.shape}."
            )
        vocabulary_size = next_ids.shape[0]
        if not np.issubdtype(next_ids.dtype, np.integer):
            raise ValueError(
                f"BigramDraft `next_ids` must be integer token ids, got dtype "
                f"{next_ids.dtype}."
            )
        bad = (next_ids < 0) | (next_ids >= vocabulary_size)
        if np.any(bad):
            raise ValueError(
                f"BigramDraft `next_ids` holds id {int(next_ids[bad][0])}, outside "
                f"the vocabulary [0, {vocabulary_size}) given by its number of rows."
            )
        if not np.all(np.isfinite(next_probs)) or np.any(next_probs < 0):
            raise ValueError(
                "BigramDraft `next_probs` must be finite and non-negative, got "
                f"min {np.min(next_probs)}, max {np.max(next_probs)}."
            )
        empty = next_probs.sum(1) <= 0
        if np.any(empty):
            raise ValueError(
                f"BigramDraft `next_probs` row {int(np.argmax(empty))} is all zero: "
                "every token needs at least one successor with positive "
                "probability (`BigramDraft.fit` fills unseen tokens with the "
                "unigram top-k)."
            )
        self.next_ids = next_ids.astype("int32")
        self.next_probs = (next_probs / next_probs.sum(1, keepdims=True)).astype(
            "float32"
        )
        self.vocabulary_size = int(vocabulary_size)
        self._next_ids = keras.Variable(
            self.next_ids, trainable=False, dtype="int32", name="bigram_next_ids"
        )
        self._next_probs = keras.Variable(
            self.next_probs, trainable=False, dtype="float32", name="bigram_next_probs"
        )

    @classmethod
    def fit(cls, tokens, vocabulary_size, top_k=16):
        """Fit from token ids (array, list of arrays or a tf.data pipeline)."""
        tokens = _as_token_array(tokens, vocabulary_size, "BigramDraft")
        if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)):
            raise ValueError(f"BigramDraft.fit: `top_k` must be an int, got {top_k!r}.")
        if top_k < 1:
            raise ValueError(f"BigramDraft.fit: `top_k` must be >= 1, got {top_k}.")
        top_k = min(int(top_k), vocabulary_size)
        previous, following = tokens[:-1], tokens[1:]
        unigram = np.bincount(tokens, minlength=vocabulary_size)
        fallback_ids = np.argsort(-unigram, kind="stable")[:top_k]
        next_ids = np.tile(fallback_ids, (vocabulary_size, 1))
        next_probs = np.tile(unigram[fallback_ids], (vocabulary_size, 1)).astype(
            "float64"
        )
        order = np.lexsort((following, previous))
        pairs = np.stack([previous[order], following[order]], 1)
        unique, counts = np.unique(pairs, axis=0, return_counts=True)
        for token in np.unique(unique[:, 0]):
            sel = unique[:, 0] == token
            successors, freq = unique[sel, 1], counts[sel]
            best = np.argsort(-freq, kind="stable")[:top_k]
            k = len(best)
            # Unused slots: id 0 with probability 0 (they add nothing to q).
            next_ids[token] = 0
            next_probs[token] = 0.0
            next_ids[token, :k] = successors[best]
            next_probs[token, :k] = freq[best]
        return cls(next_ids, next_probs)

    @property
    def variables(self):
        return [self._next_ids, self._next_probs]

    def decode(self, state, token_ids, index):
        token_ids = ops.cast(token_ids, "int32")
        ids = ops.take(self._next_ids, token_ids, axis=0)  # (batch, chunk, top_k)
        probs = ops.take(self._next_probs, token_ids, axis=0)  # (batch, chunk, top_k)
        one_hot = ops.one_hot(ids, self.vocabulary_size, dtype="float32")
        # q(x) = sum of the slots holding x: unused slots (probability 0) add
        # nothing, whatever id they hold. (batch, chunk, top_k, vocab) ->
        # (batch, chunk, vocab)
        draft_probs = ops.sum(one_hot * probs[..., None], axis=2)
        logits = ops.where(
            draft_probs > 0, ops.log(ops.maximum(draft_probs, 1e-30)), NEVER
        )
        return logits, state

    def get_config(self):
        return {
            "next_ids": self.next_ids.tolist(),
            "next_probs": self.next_probs.tolist(),
        }


@keras.saving.register_keras_serializable(package="keras_specdec")
class PromptLookupDraft(Draft):
    """Proposes the continuation of the latest earlier occurrence of the
    current n-gram in the prompt and the text generated so far (HF's
    `prompt_lookup_num_tokens`, vLLM's ngram proposer). The longest n-gram
    (`max_ngram` down to `min_ngram`) with an earlier match wins.

    Like HF's prompt lookup it proposes only what matched: `max_proposals`
    gives per row the number of tokens that follow the match (`num_matched`,
    at most gamma; 0 when no n-gram matches), and the sampler makes a round
    with no proposals a plain target step. Deterministic: q is a point mass
    on each proposal, so sampling stays exact.

    Args:
        vocabulary_size: the target's vocabulary size.
        max_ngram, min_ngram: n-gram lengths to match.
    """

    def __init__(self, vocabulary_size, max_ngram=3, min_ngram=1):
        if not 1 <= min_ngram <= max_ngram:
            raise ValueError(
                f"Need 1 <= min_ngram <= max_ngram, got {min_ngram}, {max_ngram}."
            )
        self.vocabulary_size = int(vocabulary_size)
        self.max_ngram = max_ngram
        self.min_ngram = min_ngram

    def init_state(self, token_ids, padding_mask):
        return ops.cast(token_ids, "int32")  # (batch, max_length) mirror

    def _latest_match(self, tokens, position):
        """The longest n-gram ending at `position - 1` with an earlier
        occurrence in tokens[:, :position - 1].

        Args:
            tokens: int `(batch, length)`.
            position: int32 scalar or `(batch,)`.

        Returns:
            `(found, last)`: bool `(batch,)`; int32 `(batch,)` the end of the
            latest earlier occurrence of that n-gram (-1 if none).
        """
        batch, length = ops.shape(tokens)
        tokens = ops.cast(tokens, "int32")
        position = ops.cast(position, "int32") + ops.zeros((batch,), "int32")
        t = ops.arange(length, dtype="int32")[None, :]  # candidate match ends
        found = ops.zeros((batch,), dtype="bool")
        last = ops.full((batch,), -1, dtype="int32")
        for n in range(self.max_ngram, self.min_ngram - 1, -1):
            # earlier occurrences end before position - 1
            match = (t >= n - 1) & (t < position[:, None] - 1)
            for k in range(n):
                at = ops.maximum(position - 1 - k, 0)[:, None]
                query = ops.take_along_axis(tokens, at, axis=1)  # (batch, 1)
                shifted = ops.roll(tokens, k, axis=1)  # shifted[:, t] = tok[t-k]
                match = match & (shifted == query)
            match = match & (position[:, None] - n >= 0)
            latest = ops.max(ops.where(match, t, -1), axis=1)  # (batch,)
            use = ops.any(match, axis=1) & ~found
            last = ops.where(use, latest, last)
            found = found | use
        return found, last

    def _propose(self, tokens, position):
        """Proposal for `position` from tokens[:, :position]. (batch,)

        The token after the latest match; with no match the last token
        again (never judged: `max_proposals` is 0 then)."""
        length = ops.shape(tokens)[1]
        found, last = self._latest_match(tokens, position)
        at = ops.where(found, last + 1, ops.maximum(position - 1, 0))
        at = ops.minimum(at, length - 1)[:, None]
        return ops.take_along_axis(tokens, at, axis=1)[:, 0]

    def max_proposals(self, state, tokens, index, gamma):
        """num_matched: per row, the tokens that follow the latest match of
        the longest matching n-gram (at most gamma), 0 with no match."""
        return self.propose_block(state, tokens, index, gamma)[1]

    def propose_block(self, state, tokens, index, gamma):
        """All of a round's proposals from one lookup: the gamma tokens that
        follow the latest match (HF's prompt lookup copies them the same
        way), instead of one lookup and one draft call per proposal.

        Args:
            state: unused (the sampler's buffer holds the decided tokens).
            tokens: int `(batch, length)`; positions before each row's index
                are decided.
            index: int32 `(batch,)`, each row's first undecided position.
            gamma: Python int, the proposals to return per row.

        Returns:
            `(draft_token_ids, num_matched)`: int32 `(batch, gamma)` the
            tokens after the match (only the first num_matched are judged);
            int32 `(batch,)` as `max_proposals`.
        """
        length = ops.shape(tokens)[1]
        found, last = self._latest_match(tokens, index)
        following = ops.cast(index, "int32") - 1 - last  # (batch,)
        num_matched = ops.where(found, ops.clip(following, 0, gamma), 0)
        at = last[:, None] + 1 + ops.arange(gamma, dtype="int32")[None, :]
        at = ops.clip(at, 0, length - 1)  # (batch, gamma)
        draft_token_ids = ops.take_along_axis(ops.cast(tokens, "int32"), at, axis=1)
        return draft_token_ids, ops.cast(num_matched, "int32")

    def decode(self, state, token_ids, index):
        tokens = ops.slice_update(state, [0, index], ops.cast(token_ids, "int32"))
        chunk = ops.shape(token_ids)[1]
        rows = []
        for i in range(chunk):
            proposal = self._propose(tokens, index + i + 1)
            rows.append(ops.one_hot(proposal, self.vocabulary_size, dtype="float32"))
        one_hot = ops.stack(rows, axis=1)  # (batch, chunk, vocab)
        return ops.where(one_hot > 0, 0.0, NEVER), tokens

    def get_config(self):
        return {
            "vocabulary_size": self.vocabulary_size,
            "max_ngram": self.max_ngram,
            "min_ngram": self.min_ngram,
        }
