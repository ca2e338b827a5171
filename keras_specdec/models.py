"""One model interface: everything the sampler runs is a `ModelAdapter`.

The round code (`keras_specdec.rounds`) never asks what kind of model it
holds. `adapt(model)` wraps a model once, and the adapter answers:

- `init_state(token_ids, padding_mask, target=None)`: the model's decoding
  state for this batch (its key/value cache, an encoder pass, a model-free
  draft's tables);
- `decode(state, token_ids, index, prompt_mask=None)`: a chunk of tokens at
  one shared position -> `(logits, hidden, state)`;
- `decode_rows(...)`: the same with one position per row (`jax.vmap` over
  rows, each row a batch of one);
- the draft side of a round: `first_logits` (catch up on the tokens decided
  last round, return the logits of proposal 0) and `next_logits` (feed
  proposal j - 1, return the logits of proposal j). The defaults run
  `decode_rows`; drafts that read the target override them.

Optional hooks are declared one way, as class attributes:
`proposes_block` (the draft makes a whole round's proposals at once,
`propose_block`), `caps_proposals` (it may propose fewer than gamma,
`max_proposals`), `reads_target` (its first step reads the target's hidden
states and cache: a `TargetView`).

Adapters: `CausalLMAdapter` (KerasHub causal LMs: `call_with_cache`,
`_build_cache`), `EncoderDecoderAdapter` (T5, BART: self- and
cross-attention caches), `T5GemmaAdapter`, `ModelFreeAdapter`
(`keras_specdec.drafts.Draft`). Hidden-state drafts (a trained draft head,
Gemma4's MTP assistants) register theirs with `register_adapter`.

Glossary of the target view: *hidden* are the target's final hidden states
(the second output of KerasHub's `call_with_cache`), at positions
`hidden_start .. hidden_start + n - 1` per row; h_t predicted x_{t+1}.
"""

import inspect
from typing import Any, NamedTuple

import jax
import keras_hub
from keras import ops

from keras_specdec import model_utils
from keras_specdec.drafts import Draft


class TargetView(NamedTuple):
    """What a draft that reads the target sees (`reads_target` drafts)."""

    hidden: Any  # (batch, n, hidden_dim) target's final hidden states
    hidden_start: Any  # (batch,) int32, the position of hidden[:, 0]; may be
    #   negative for rows with a 1-token prompt: positions < 0 hold zeros
    state: Any  # the target's decoding state (its cache) after that pass
    state_axes: Any  # batch axis of each leaf of `state`


def _parameters(method):
    return inspect.signature(method).parameters


class ModelAdapter:
    """The base adapter: a model behind the sampler's small protocol.

    Args:
        model: the wrapped model (`self.model`).
    """

    reads_target = False  # first_logits / init_state read a TargetView
    proposes_block = False  # propose_block(state, tokens, index, gamma)
    caps_proposals = False  # max_proposals(state, tokens, index, gamma)
    is_seq2seq = False  # an encoder-decoder (needs the generate() encoder inputs)

    def __init__(self, model):
        self.model = model

    @property
    def name(self):
        return type(self.model).__name__

    @property
    def vocabulary_size(self):
        return model_utils.vocabulary_size(self.model)

    @property
    def variables(self):
        """What the compiled program takes as arguments (never constants)."""
        return list(self.model.weights)

    @property
    def context_length(self):
        """Positions its learned position embeddings cover, or None."""
        return model_utils.context_length(self.model)

    def within_vocabulary(self, token_ids):
        """`token_ids` clamped into this model's vocabulary (a padded smaller
        draft can be fed padding ids the target generated)."""
        return ops.minimum(token_ids, self.vocabulary_size - 1)

    def target_state(self, cache):
        """As a target: the decoding state from `generate_step`'s cache."""
        return cache

    def for_target(self, target):
        """This draft's adapter for `target` (the KerasHub model `generate()`
        runs). Drafts that need the target model itself (its embedding
        table, a Gemma4 assistant) return a bound adapter and check the pair
        here, before anything compiles; the default is this adapter."""
        return self

    # -- the two calls every model answers ---------------------------------

    def init_state(self, token_ids, padding_mask, target=None):
        """The decoding state for this batch.

        Args:
            token_ids: int `(batch, max_length)`, the `generate()` buffer.
            padding_mask: bool `(batch, max_length)`, True on prompt tokens.
            target: a `TargetView` over the target's prefill
                (`reads_target` adapters only).
        """
        raise NotImplementedError

    def decode(self, state, token_ids, index, prompt_mask=None):
        """Run `token_ids` `(batch, chunk)` at positions `index ..`.

        Returns:
            `(logits, hidden, state)`: logits `(batch, chunk, vocab)`, row i
            predicting position index + i + 1; hidden `(batch, chunk, d)`
            (None where the model has none).
        """
        raise NotImplementedError

    # -- per-row positions ---------------------------------------------------

    def batch_axes(self, state, token_ids, padding_mask, target=None):
        """The batch axis of every leaf of `state` (None: no batch axis).

        `init_state` is traced (shapes only) for twice the batch; the axis
        whose size changes is the batch axis. Twice (not one more) keeps a
        batch that a `keras.distribution` layout splits divisible.
        """
        batch = ops.shape(token_ids)[0]
        inputs = model_utils._GENERATE_INPUTS.get(None) if self.is_seq2seq else None

        def doubled(x, axis=0):
            if axis is None:
                return jax.ShapeDtypeStruct(x.shape, x.dtype)
            shape = list(x.shape)
            shape[axis] *= 2
            return jax.ShapeDtypeStruct(tuple(shape), x.dtype)

        def make(ids, mask, encoder_inputs, target):
            token = None
            if encoder_inputs:
                token = model_utils._GENERATE_INPUTS.set(encoder_inputs)
            try:
                return self.init_state(ids, mask, target)
            finally:
                if token is not None:
                    model_utils._GENERATE_INPUTS.reset(token)

        encoder_inputs = None
        if inputs is not None:
            encoder_inputs = {
                k: doubled(v)
                for k, v in inputs.items()
                if k in ("encoder_token_ids", "encoder_padding_mask")
            }
        doubled_target = None
        if target is not None:
            doubled_target = TargetView(
                hidden=doubled(target.hidden),
                hidden_start=doubled(target.hidden_start),
                state=jax.tree.map(
                    doubled,
                    target.state,
                    target.state_axes,
                    is_leaf=lambda x: x is None,
                ),
                state_axes=target.state_axes,
            )
        twice = jax.eval_shape(
            lambda ids, mask, enc, tgt: make(ids, mask, enc, tgt),
            doubled(token_ids),
            doubled(padding_mask),
            encoder_inputs,
            doubled_target,
        )

        def axis(one, two):
            one, two = tuple(ops.shape(one)), tuple(two.shape)
            changed = [i for i, (a, b) in enumerate(zip(one, two)) if a != b]
            if len(changed) > 1 or len(one) != len(two):
                raise ValueError(
                    f"Cannot find the batch axis of a `{self.name}` state leaf: "
                    f"shape {one} for batch {batch}, {two} for batch {2 * batch}."
                )
            return changed[0] if changed else None

        return jax.tree.map(axis, state, twice)

    def decode_rows(self, state, token_ids, index, batch_axes, prompt_mask=None):
        """`decode` with one index per row: row i's chunk sits at `index[i]`.

        `jax.vmap` over rows: each row runs the model's own cached call as a
        batch of one with a scalar index, so every family's position handling
        (position embeddings, RoPE offsets, attention masks, cache writes) is
        reused as is; XLA lowers the per-row cache writes to scatters.

        Args:
            state: the decoding state (`init_state`).
            token_ids: int `(batch, chunk)`, row i at `index[i] ..`.
            index: int32 `(batch,)`.
            batch_axes: `batch_axes(...)` of this state.
            prompt_mask: optional bool `(batch, chunk)`, True on prompt tokens.

        Returns:
            `(logits, hidden, state)` as `decode`, one row per row.
        """
        if ops.shape(token_ids)[0] == 1:
            # One row: its index is the batch's; no vmap (and no scatter).
            return self.decode(
                state, token_ids, ops.cast(index, "int32")[0], prompt_mask
            )
        return vmap_rows(
            lambda state, ids, idx, mask: self.decode(state, ids, idx, mask),
            state,
            batch_axes,
            token_ids,
            ops.cast(index, "int32"),
            prompt_mask,
        )

    # -- the draft side of a round -----------------------------------------

    def first_logits(self, state, tokens, index, forced, axes, target=None):
        """Catch up on the tokens decided last round; proposal 0's logits.

        The call re-feeds index - 2 too: after a round in which every
        proposal was accepted, the last one was never fed to the draft and
        its cache slot would be a hole.

        Args:
            state: the draft's state.
            tokens: int `(batch, length)`, the sampler's buffer.
            index: int32 `(batch,)`, each row's first undecided position.
            forced: bool `(batch, length)`, True on prompt positions.
            axes: the batch axes of `state`.
            target: a `TargetView` (`reads_target` adapters only).

        Returns:
            `(logits, state)`, logits `(batch, vocab)` predicting `index`.
        """
        start = ops.maximum(index - 2, 0)
        logits, _, state = self.decode_rows(
            state,
            window(tokens, start, 2),
            start,
            axes,
            window(forced, start, 2),
        )
        return take_row(logits, index - 1 - start), state  # (batch, vocab)

    def next_logits(self, state, tokens, position, forced, axes):
        """Feed the token at `position` (batch,): the logits of position + 1.

        Returns:
            `(logits, state)`, logits `(batch, vocab)`.
        """
        logits, _, state = self.decode_rows(
            state,
            window(tokens, position, 1),
            position,
            axes,
            window(forced, position, 1),
        )
        return logits[:, 0], state


# ---------------------------------------------------------------------------
# Per-row helpers shared by the adapters and the round code.


def window(x, start, size):
    """`x[i, start[i] : start[i] + size]` per row, clipped to the buffer.

    Args:
        x: `(batch, length, ...)`.
        start: int32 `(batch,)`.
        size: Python int.

    Returns:
        `(batch, size, ...)`.
    """
    length = ops.shape(x)[1]
    positions = start[:, None] + ops.arange(size, dtype="int32")[None, :]
    positions = ops.clip(positions, 0, length - 1)
    positions = ops.reshape(positions, (*ops.shape(positions), *([1] * (x.ndim - 2))))
    return ops.take_along_axis(x, positions, axis=1)


def take_row(x, at):
    """`x[i, at[i]]` for x `(batch, n, ...)`, at int32 `(batch,)`."""
    at = ops.reshape(at, (-1, 1) + (1,) * (len(ops.shape(x)) - 2))
    return ops.take_along_axis(x, at, axis=1)[:, 0]


def vmap_rows(fn, state, batch_axes, *rows):
    """`fn(state, *rows)` per row: each row a batch of one (`jax.vmap`).

    Args:
        fn: `(state, *row_args) -> (logits, hidden, state)`, called on batches
            of one; row arguments get their batch axis back (`[None]`), a
            scalar row argument (an index) stays a scalar.
        state: a pytree whose leaves have the batch on `batch_axes`.
        batch_axes: the batch axis of each leaf (None: shared by all rows).
        rows: per-row arguments (batch first), or None.

    Returns:
        `(logits, hidden, state)` with the batch restored.
    """
    leaves, treedef = jax.tree.flatten(state)
    axes = jax.tree.leaves(batch_axes, is_leaf=lambda x: x is None)
    if len(axes) != len(leaves):
        raise ValueError("`batch_axes` does not match the state's structure.")

    def one_row(row_leaves, *row_args):
        row_leaves = [
            x if a is None else ops.expand_dims(x, a) for x, a in zip(row_leaves, axes)
        ]
        row_args = [
            None if x is None else (x if x.ndim == 0 else x[None]) for x in row_args
        ]
        logits, hidden, new_state = fn(
            jax.tree.unflatten(treedef, row_leaves), *row_args
        )
        new_leaves = jax.tree.leaves(new_state)
        new_leaves = [
            x if a is None else ops.squeeze(x, a) for x, a in zip(new_leaves, axes)
        ]
        hidden = None if hidden is None else hidden[0]
        return logits[0], hidden, new_leaves

    logits, hidden, new_leaves = jax.vmap(
        one_row,
        in_axes=(axes, *(None if r is None else 0 for r in rows)),
        out_axes=(0, 0, axes),
    )(leaves, *rows)
    return logits, hidden, jax.tree.unflatten(treedef, new_leaves)


# ---------------------------------------------------------------------------
# KerasHub models.


class CausalLMAdapter(ModelAdapter):
    """A KerasHub `CausalLM`: `call_with_cache` and `_build_cache`."""

    def init_state(self, token_ids, padding_mask, target=None):
        token_ids = self.within_vocabulary(token_ids)
        kwargs = {}
        for name, param in list(_parameters(self.model._build_cache).items())[1:]:
            if name == "padding_mask":
                kwargs[name] = padding_mask
            elif param.default is inspect.Parameter.empty:
                kwargs[name] = None  # images / audio: text-only generation
        # Positions past each row's prompt hold garbage that is overwritten
        # before any query attends to it (causal masking).
        return self.model._build_cache(token_ids, **kwargs)[-1]

    def decode(self, state, token_ids, index, prompt_mask=None):
        token_ids = self.within_vocabulary(token_ids)
        kwargs = {}
        if prompt_mask is not None and "cache_update_mask" in _parameters(
            self.model.call_with_cache
        ):
            # Families with a `cache_update_mask` keep their prefill cache
            # there, as their own `generate_step` does.
            kwargs["cache_update_mask"] = ops.logical_not(prompt_mask)
        outputs = self.model.call_with_cache(
            token_ids, state, ops.cast(index, "int32"), **kwargs
        )
        hidden = outputs[1] if len(outputs) == 3 else None
        return outputs[0], hidden, outputs[-1]


class EncoderDecoderAdapter(ModelAdapter):
    """T5 and BART: state `(self_cache, encoder_hidden, encoder_mask,
    cross_cache)`, the tuple their `generate_step` hands the sampler.

    Encoder-decoder drafts run their own encoder on the encoder inputs of the
    `generate()` batch (`model_utils.current_generate_inputs`)."""

    is_seq2seq = True

    def encoder_inputs(self):
        inputs = model_utils.current_generate_inputs(self.model)
        ids = self.within_vocabulary(inputs["encoder_token_ids"])
        return ids, inputs["encoder_padding_mask"]

    def init_state(self, token_ids, padding_mask, target=None):
        encoder_ids, encoder_mask = self.encoder_inputs()
        _, encoder_hidden, self_cache, cross_cache = self.model._build_cache(
            encoder_ids, encoder_mask, self.within_vocabulary(token_ids)
        )
        return (self_cache, encoder_hidden, encoder_mask, cross_cache)

    def decode(self, state, token_ids, index, prompt_mask=None):
        self_cache, encoder_hidden, encoder_mask, cross_cache = state
        logits, hidden, self_cache, _ = self.model.call_decoder_with_cache(
            encoder_hidden_states=encoder_hidden,
            encoder_padding_mask=encoder_mask,
            decoder_token_ids=self.within_vocabulary(token_ids),
            self_attention_cache=self_cache,
            self_attention_cache_update_index=ops.cast(index, "int32"),
            cross_attention_cache=cross_cache,
            cross_attention_cache_update_index=None,
        )
        return logits, hidden, (self_cache, encoder_hidden, encoder_mask, cross_cache)


class T5GemmaAdapter(EncoderDecoderAdapter):
    """T5Gemma: `call_decoder_with_cache(decoder_token_ids, ...,
    encoder_output, ...)`; state `(cache, encoder_output, encoder_mask)`."""

    def target_state(self, cache):
        # T5Gemma keeps its encoder output out of the cache handed to the
        # sampler: run the encoder on this call's inputs.
        encoder_ids, encoder_mask = self.encoder_inputs()
        encoder_output, encoder_mask = self.model.call_encoder(
            encoder_ids, encoder_mask
        )
        return (cache, encoder_output, encoder_mask)

    def init_state(self, token_ids, padding_mask, target=None):
        encoder_ids, encoder_mask = self.encoder_inputs()
        _, cache, (encoder_output, encoder_mask) = self.model._build_cache(
            encoder_ids, encoder_mask, self.within_vocabulary(token_ids), padding_mask
        )
        return (cache, encoder_output, encoder_mask)

    def decode(self, state, token_ids, index, prompt_mask=None):
        cache, encoder_output, encoder_mask = state
        logits, hidden, cache = self.model.call_decoder_with_cache(
            decoder_token_ids=self.within_vocabulary(token_ids),
            decoder_padding_mask=None,
            cache=cache,
            cache_update_index=ops.cast(index, "int32"),
            encoder_output=encoder_output,
            encoder_padding_mask=encoder_mask,
        )
        return logits, hidden, (cache, encoder_output, encoder_mask)


class ModelFreeAdapter(ModelAdapter):
    """A `keras_specdec.drafts.Draft` (unigram, bigram, prompt lookup, yours).

    Its hooks (`proposes_block`, `caps_proposals`) are the draft's own
    declarations."""

    @property
    def proposes_block(self):
        return self.model.proposes_block

    @property
    def caps_proposals(self):
        return self.model.caps_proposals

    @property
    def vocabulary_size(self):
        return int(self.model.vocabulary_size)

    @property
    def variables(self):
        return list(self.model.variables)

    @property
    def context_length(self):
        return None

    def init_state(self, token_ids, padding_mask, target=None):
        return self.model.init_state(self.within_vocabulary(token_ids), padding_mask)

    def decode(self, state, token_ids, index, prompt_mask=None):
        logits, state = self.model.decode(
            state, self.within_vocabulary(token_ids), ops.cast(index, "int32")
        )
        return logits, None, state

    def propose_block(self, state, tokens, index, gamma):
        return self.model.propose_block(state, tokens, index, gamma)

    def max_proposals(self, state, tokens, index, gamma):
        return self.model.max_proposals(state, tokens, index, gamma)


# ---------------------------------------------------------------------------
# Which adapter wraps which model.

# (class, adapter class) pairs, most specific first; hidden-state drafts add
# theirs with `register_adapter`.
_ADAPTERS = []


def register_adapter(model_class, adapter_class):
    """Make `adapt` wrap instances of `model_class` in `adapter_class`."""
    _ADAPTERS.insert(0, (model_class, adapter_class))


def adapt(model):
    """The adapter of `model` (an adapter is returned as it is).

    Raises:
        ValueError: for a model the sampler cannot run, naming what it can.
    """
    if isinstance(model, ModelAdapter):
        return model
    for model_class, adapter_class in _ADAPTERS:
        if isinstance(model, model_class):
            return adapter_class(model)
    if isinstance(model, Draft):
        return ModelFreeAdapter(model)
    if isinstance(model, keras_hub.models.Seq2SeqLM):
        if "encoder_output" in _parameters(model.call_decoder_with_cache):
            return T5GemmaAdapter(model)
        return EncoderDecoderAdapter(model)
    if isinstance(model, keras_hub.models.CausalLM):
        return CausalLMAdapter(model)
    raise ValueError(
        "`draft` must be a KerasHub `CausalLM` or `Seq2SeqLM` (or a preset name "
        "or path for one), a draft that reads the target (a "
        "`keras_specdec.heads.DraftHead`, a Gemma4 assistant), or a "
        f"`keras_specdec.drafts.Draft`, got {type(model).__name__}."
    )
