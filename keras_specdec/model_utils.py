"""What the sampler needs from a KerasHub model, in one place.

The sampler sees every model through two calls: `init_state` (build the
model's decoding state from the prompt) and `decode` (run a chunk of tokens at
an index, return logits and the new state). Three kinds of KerasHub models:

- causal LMs: `call_with_cache(token_ids, cache, index)` and a private
  `_build_cache(token_ids, ...)` (the multimodal Gemmas take extra optional
  arguments, filled in for text-only generation);
- T5 and BART: `call_decoder_with_cache(...)` with self- and cross-attention
  caches; state `(self_cache, encoder_hidden, encoder_mask, cross_cache)`,
  the same tuple their `generate_step` hands the sampler;
- T5Gemma: `call_decoder_with_cache(decoder_token_ids, ..., encoder_output,
  ...)`; state `(cache, encoder_output, encoder_padding_mask)`.

Encoder-decoder drafts run their own encoder, on the encoder inputs of the
`generate()` batch. KerasHub's `generate_step` does not pass those to the
sampler, so `publish_generate_inputs` wraps the family's `generate_step` once
(at sampler construction) to publish its `inputs` in a context variable for
the duration of the call. Inside `generate()`'s jit these are the traced
arguments of the current call, never values frozen into the program, so a
second batch of the same shape that hits the jit cache gets its own inputs.

Per-row positions: `decode_rows` runs `decode` with one index per row
(`jax.vmap` over rows, each row its own batch of one). It needs to know which
axis of each state leaf is the batch axis; `state_batch_axes` finds it without
knowing the family, by tracing `init_state` (shapes only, `jax.eval_shape`)
for twice the batch and comparing the shapes with the state's.
"""

import contextvars
import functools
import inspect

import jax
import keras_hub
from keras import ops

# Families whose cache carries recurrent state: a rejected draft token cannot
# be undone by moving an index back, so speculative decoding cannot roll back.
RECURRENT_CAUSAL_LMS = ("RWKV7CausalLM", "Qwen3_5CausalLM", "Qwen3_5MoeCausalLM")


def is_recurrent(model):
    return any(cls.__name__ in RECURRENT_CAUSAL_LMS for cls in type(model).__mro__)


def check_rollback(model, role):
    if is_recurrent(model):
        raise ValueError(
            f"The {role} model is a `{type(model).__name__}`, whose cache keeps "
            "recurrent state that cannot be rolled back to an earlier index "
            "after a rejected draft token. Speculative decoding needs an "
            "attention (key/value cache) model: use e.g. a Gemma, Llama, "
            "Qwen3 or GPT-2 family model as the "
            f"{role}."
        )


def is_model_free(model):
    from keras_specdec.drafts import Draft

    return isinstance(model, Draft)


def vocabulary_size(model):
    if is_model_free(model):
        return int(model.vocabulary_size)
    backbone = getattr(model, "backbone", None)
    size = getattr(backbone, "vocabulary_size", None)
    if size is None:
        raise ValueError(
            f"Cannot read the vocabulary size of `{type(model).__name__}`: "
            "expected a KerasHub task model with `model.backbone.vocabulary_size`."
        )
    return int(size)


def load_causal_lm(draft):
    """A draft given as a preset name or path, loaded as KerasHub does."""
    return keras_hub.models.CausalLM.from_preset(draft)


def _parameters(method):
    return inspect.signature(method).parameters


def build_cache(model, token_ids, padding_mask):
    """Seed `model`'s key/value cache with one pass over `token_ids`.

    Returns the cache. Positions past each row's prompt hold garbage that is
    overwritten before any query attends to it (causal masking).
    """
    kwargs = {}
    for name, param in list(_parameters(model._build_cache).items())[1:]:
        if name == "padding_mask":
            kwargs[name] = padding_mask
        elif param.default is inspect.Parameter.empty:
            kwargs[name] = None  # images / audio: text-only generation.
    outputs = model._build_cache(token_ids, **kwargs)
    return outputs[-1]


def call_with_cache(model, token_ids, cache, index, prompt_mask=None):
    """`model.call_with_cache` on a chunk of `token_ids` starting at `index`.

    Args:
        token_ids: int `(batch, chunk)`.
        cache: the model's cache.
        index: int32 scalar tensor, the position of `token_ids[:, 0]`.
        prompt_mask: bool `(batch, chunk)`, True on prompt tokens. Families
            that take a `cache_update_mask` keep their prefill cache there, as
            their own `generate_step` does.

    Returns:
        `(logits, cache)`, logits `(batch, chunk, vocab)`.
    """
    kwargs = {}
    if prompt_mask is not None and "cache_update_mask" in _parameters(
        model.call_with_cache
    ):
        kwargs["cache_update_mask"] = ops.logical_not(prompt_mask)
    index = ops.cast(index, "int32")
    outputs = model.call_with_cache(token_ids, cache, index, **kwargs)
    return outputs[0], outputs[-1]


# ---------------------------------------------------------------------------
# Encoder-decoders.

_GENERATE_INPUTS = contextvars.ContextVar("keras_specdec_generate_inputs")


def is_seq2seq(model):
    return isinstance(model, keras_hub.models.Seq2SeqLM)


def publish_generate_inputs(model_class):
    """Wrap `model_class.generate_step` (once) to publish its inputs."""
    owner = next(c for c in model_class.__mro__ if "generate_step" in c.__dict__)
    original = owner.__dict__["generate_step"]
    if getattr(original, "_keras_specdec_publishes_inputs", False):
        return

    @functools.wraps(original)
    def generate_step(self, inputs, *args, **kwargs):
        token = _GENERATE_INPUTS.set(inputs)
        try:
            return original(self, inputs, *args, **kwargs)
        finally:
            _GENERATE_INPUTS.reset(token)

    generate_step._keras_specdec_publishes_inputs = True
    owner.generate_step = generate_step


def current_generate_inputs(model):
    inputs = _GENERATE_INPUTS.get(None)
    if inputs is None or "encoder_token_ids" not in inputs:
        raise ValueError(
            f"The encoder inputs of `{type(model).__name__}.generate()` are not "
            "available to the sampler. keras_specdec publishes them by wrapping "
            "the draft family's `generate_step` when the sampler is built; use "
            "a draft of the target's family, or call "
            "`keras_specdec.model_utils.publish_generate_inputs("
            f"{type(model).__name__})` before `generate()`."
        )
    return inputs


def _is_t5gemma_like(model):
    return "encoder_output" in _parameters(model.call_decoder_with_cache)


def target_state(model, cache):
    """The sampler's decoding state for the target from `generate_step`'s cache."""
    if not is_seq2seq(model) or not _is_t5gemma_like(model):
        return cache  # causal cache, or T5/BART's 4-tuple
    # T5Gemma keeps its encoder output out of the cache handed to the sampler.
    inputs = current_generate_inputs(model)
    encoder_output, encoder_mask = model.call_encoder(
        inputs["encoder_token_ids"], inputs["encoder_padding_mask"]
    )
    return (cache, encoder_output, encoder_mask)


def init_state(model, token_ids, padding_mask):
    """Build a draft's own decoding state (and encoder pass) for this batch."""
    if is_model_free(model):
        return model.init_state(token_ids, padding_mask)
    if not is_seq2seq(model):
        return build_cache(model, token_ids, padding_mask)
    inputs = current_generate_inputs(model)
    encoder_ids = inputs["encoder_token_ids"]
    encoder_mask = inputs["encoder_padding_mask"]
    if _is_t5gemma_like(model):
        _, cache, (encoder_output, encoder_mask) = model._build_cache(
            encoder_ids, encoder_mask, token_ids, padding_mask
        )
        return (cache, encoder_output, encoder_mask)
    _, encoder_hidden, self_cache, cross_cache = model._build_cache(
        encoder_ids, encoder_mask, token_ids
    )
    return (self_cache, encoder_hidden, encoder_mask, cross_cache)


def decode(model, state, token_ids, index, prompt_mask=None):
    """Run `token_ids` (batch, chunk) at `index`: `(logits, new_state)`."""
    if is_model_free(model):
        return model.decode(state, token_ids, ops.cast(index, "int32"))
    if not is_seq2seq(model):
        return call_with_cache(model, token_ids, state, index, prompt_mask)
    index = ops.cast(index, "int32")
    if _is_t5gemma_like(model):
        cache, encoder_output, encoder_mask = state
        logits, _, cache = model.call_decoder_with_cache(
            decoder_token_ids=token_ids,
            decoder_padding_mask=None,
            cache=cache,
            cache_update_index=index,
            encoder_output=encoder_output,
            encoder_padding_mask=encoder_mask,
        )
        return logits, (cache, encoder_output, encoder_mask)
    self_cache, encoder_hidden, encoder_mask, cross_cache = state
    logits, _, self_cache, _ = model.call_decoder_with_cache(
        encoder_hidden_states=encoder_hidden,
        encoder_padding_mask=encoder_mask,
        decoder_token_ids=token_ids,
        self_attention_cache=self_cache,
        self_attention_cache_update_index=index,
        cross_attention_cache=cross_cache,
        cross_attention_cache_update_index=None,
    )
    return logits, (self_cache, encoder_hidden, encoder_mask, cross_cache)


# ---------------------------------------------------------------------------
# Per-row positions.


def state_batch_axes(model, state, token_ids, padding_mask):
    """The batch axis of every leaf of `model`'s decoding `state`.

    Found generically: `init_state` is traced (shapes only, nothing
    computed) for a batch twice as large as `token_ids`'; the axis whose size
    differs from `state`'s is the batch axis (`None` for a leaf without one,
    e.g. a table shared by all rows). Twice (not one more) keeps a batch that
    a `keras.distribution` layout splits across devices divisible.

    Args:
        model: a KerasHub causal LM / seq2seq LM or a model-free `Draft`.
        state: its state for this batch (`init_state` / `target_state`).
        token_ids: int `(batch, max_length)`, the `generate()` buffer.
        padding_mask: bool `(batch, max_length)`.

    Returns:
        A pytree of the state's structure with an int (or `None`) per leaf.
    """
    batch, length = ops.shape(token_ids)
    inputs = _GENERATE_INPUTS.get(None) if is_seq2seq(model) else None

    def make(ids, mask, encoder_inputs):
        token = _GENERATE_INPUTS.set(encoder_inputs) if encoder_inputs else None
        try:
            return init_state(model, ids, mask)
        finally:
            if token is not None:
                _GENERATE_INPUTS.reset(token)

    def doubled(x):
        return jax.ShapeDtypeStruct((2 * x.shape[0], *x.shape[1:]), x.dtype)

    encoder_inputs = None
    if inputs is not None:
        encoder_inputs = {
            k: doubled(v)
            for k, v in inputs.items()
            if k in ("encoder_token_ids", "encoder_padding_mask")
        }
    twice = jax.eval_shape(
        make, doubled(token_ids), doubled(padding_mask), encoder_inputs
    )

    def axis(one, two):
        one, two = tuple(ops.shape(one)), tuple(two.shape)
        changed = [i for i, (a, b) in enumerate(zip(one, two)) if a != b]
        if len(changed) > 1 or len(one) != len(two):
            raise ValueError(
                f"Cannot find the batch axis of a `{type(model).__name__}` "
                f"state leaf: shape {one} for batch {batch}, {two} for batch "
                f"{2 * batch}."
            )
        return changed[0] if changed else None

    return jax.tree.map(axis, state, twice)


def decode_rows(model, state, token_ids, index, batch_axes, prompt_mask=None):
    """`decode` with one index per row: row i's chunk sits at `index[i]`.

    `jax.vmap` over rows: each row runs the model's own cached call as a
    batch of one with a scalar index, so every family's position handling
    (position embeddings, RoPE offsets, attention masks, cache writes) is
    reused as is; XLA lowers the per-row cache writes to scatters.

    Args:
        model: a KerasHub causal LM / seq2seq LM or a model-free `Draft`.
        state: its decoding state (`init_state` / `target_state`).
        token_ids: int `(batch, chunk)`, row i at positions
            `index[i] .. index[i] + chunk - 1`.
        index: int32 `(batch,)`, each row's start position.
        batch_axes: `state_batch_axes(...)` for this state.
        prompt_mask: optional bool `(batch, chunk)`, True on prompt tokens.

    Returns:
        `(logits, new_state)`, logits `(batch, chunk, vocab)`.
    """
    if ops.shape(token_ids)[0] == 1:
        # One row: its index is the batch's, no vmap (and no scatter) needed.
        return decode(model, state, token_ids, ops.cast(index, "int32")[0], prompt_mask)
    leaves, treedef = jax.tree.flatten(state)
    axes = jax.tree.leaves(batch_axes, is_leaf=lambda x: x is None)
    if len(axes) != len(leaves):
        raise ValueError("`batch_axes` does not match the state's structure.")

    def one_row(row_leaves, row_token_ids, row_index, row_mask):
        row_leaves = [
            x if a is None else ops.expand_dims(x, a) for x, a in zip(row_leaves, axes)
        ]
        logits, new_state = decode(
            model,
            jax.tree.unflatten(treedef, row_leaves),
            row_token_ids[None],
            row_index,
            None if row_mask is None else row_mask[None],
        )
        new_leaves = jax.tree.leaves(new_state)
        new_leaves = [
            x if a is None else ops.squeeze(x, a) for x, a in zip(new_leaves, axes)
        ]
        return logits[0], new_leaves

    logits, new_leaves = jax.vmap(
        one_row,
        in_axes=(axes, 0, 0, None if prompt_mask is None else 0),
        out_axes=(0, axes),
    )(leaves, token_ids, ops.cast(index, "int32"), prompt_mask)
    return logits, jax.tree.unflatten(treedef, new_leaves)
