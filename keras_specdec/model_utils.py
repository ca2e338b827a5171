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
import difflib
import functools
import inspect
import os

import jax
import keras_hub
import numpy as np
from keras import ops
from keras.src.saving import serialization_lib
from keras_hub.src.utils.preset_utils import BUILTIN_PRESETS

from keras_specdec import rejection

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


def _looks_like_path(preset):
    return (
        os.sep in preset
        or (os.altsep is not None and os.altsep in preset)
        or preset.startswith((".", "~"))
    )


def load_causal_lm(preset, role="draft"):
    """A model given as a KerasHub preset name, hub handle or local preset
    directory, loaded with `keras_hub.models.CausalLM.from_preset` (which also
    loads `Seq2SeqLM` presets).

    Fails with a `ValueError` naming the preset and how to get it when the
    preset is unknown (a typo), a local path that does not exist, or cannot be
    downloaded (offline, gated, hub error). Unknown names and missing paths
    are reported without touching the network.

    Loading runs outside any Keras safe-mode scope, exactly like a direct
    `from_preset(preset)` call: `keras_hub.samplers.get(config)` deserialises
    samplers in safe mode, in which KerasHub refuses the preset's own
    tokenizer files.
    """
    builtin = preset in BUILTIN_PRESETS
    is_handle = "://" in preset
    expanded = os.path.expanduser(preset)
    if not (builtin or is_handle or os.path.exists(expanded)):
        if _looks_like_path(preset):
            raise ValueError(
                f"The {role} preset directory {preset!r} does not exist. Pass "
                "the directory that `model.save_to_preset(path)` wrote (it "
                "holds `config.json` and `model.weights.h5`), or a KerasHub "
                "preset name."
            )
        close = difflib.get_close_matches(preset, BUILTIN_PRESETS, n=3)
        hint = f" Did you mean {' or '.join(map(repr, close))}?" if close else ""
        raise ValueError(
            f"Unknown {role} preset {preset!r}: it is not a KerasHub preset "
            "name, a hub handle (`kaggle://...`, `hf://...`) or an existing "
            f"local preset directory.{hint} List the names with "
            "`keras_hub.models.CausalLM.presets.keys()`."
        )
    try:
        with serialization_lib.SafeModeScope(None):
            return keras_hub.models.CausalLM.from_preset(expanded)
    except Exception as error:
        if os.path.exists(expanded):
            raise  # a local preset: KerasHub's own error says what is wrong
        raise ValueError(
            f"Could not load the {role} preset {preset!r} "
            f"({type(error).__name__}: {error}). It is downloaded from "
            "Kaggle / Hugging Face on first use, which needs network access "
            "(and, for gated models such as Gemma and Llama, Kaggle "
            "credentials `KAGGLE_USERNAME`/`KAGGLE_KEY` and the model's "
            "licence accepted on kaggle.com). Offline, download it on a "
            "machine with internet: `keras_hub.models.CausalLM.from_preset("
            f"{preset!r}).save_to_preset('DIR')`, copy DIR here and pass "
            f"'DIR' as the {role} instead."
        ) from error


def match_vocabulary(draft_logits, target_vocabulary_size):
    """Draft logits over the target's ids, for vocabularies that differ only
    by padding (one tokenizer, embedding tables of different sizes).

    Args:
        draft_logits: `(..., draft_vocab)` logits.
        target_vocabulary_size: int, the target's vocabulary size.

    Returns:
        `(..., target_vocabulary_size)` logits. A smaller draft is extended
        with a logit so negative that its probability is exactly 0 after the
        softmax (q is extended with zeros); a larger draft's extra entries are
        dropped, so the softmax renormalises q over the target's ids.
        Speculative decoding is exact for any draft distribution q over the
        target's ids, so both keep the output exact.
    """
    draft_vocab = draft_logits.shape[-1]
    if draft_vocab == target_vocabulary_size:
        return draft_logits
    if draft_vocab > target_vocabulary_size:
        return draft_logits[..., :target_vocabulary_size]
    pad_shape = (*draft_logits.shape[:-1], target_vocabulary_size - draft_vocab)
    padding = ops.full(pad_shape, rejection.NEVER_LOGIT, dtype=draft_logits.dtype)
    return ops.concatenate([draft_logits, padding], axis=-1)


def context_length(model):
    """How many positions `model`'s learned position embeddings cover (the
    fewest over its `PositionEmbedding` layers, e.g. GPT-2, OPT, BART), or
    None for model-free drafts and position schemes without a table (RoPE,
    ALiBi, T5's relative buckets)."""
    if is_model_free(model):
        return None
    backbone = getattr(model, "backbone", model)
    lengths = [
        int(layer.sequence_length)
        for layer in backbone._flatten_layers(include_self=False)
        if isinstance(layer, keras_hub.layers.PositionEmbedding)
    ]
    return min(lengths) if lengths else None


def _tokenizer(model):
    preprocessor = getattr(model, "preprocessor", None)
    return getattr(preprocessor, "tokenizer", None)


def tokenizer_mismatch(target, draft, num_samples=2048):
    """Why `target` and `draft` do not share one tokenizer, or None if they do.

    Compares the two models' KerasHub tokenizers on the ids both define
    (every id for vocabularies up to `num_samples`, else an evenly spaced
    sample including the first and last shared ids).
    """
    target_tokenizer, draft_tokenizer = _tokenizer(target), _tokenizer(draft)
    tokenizers = {"target": target_tokenizer, "draft": draft_tokenizer}
    missing = [role for role, tokenizer in tokenizers.items() if tokenizer is None]
    if missing:
        verb = "has" if len(missing) == 1 else "have"
        return (
            f"the {' and '.join(missing)} {verb} no tokenizer attached "
            "(`preprocessor=None`), so keras_specdec cannot check that the two "
            "share one tokenizer. Attach the preprocessors (e.g. load both with "
            "`from_preset`) to allow vocabularies that differ only by padding"
        )
    shared = min(
        int(target_tokenizer.vocabulary_size()), int(draft_tokenizer.vocabulary_size())
    )
    ids = np.unique(np.linspace(0, shared - 1, min(shared, num_samples)).astype(int))
    for i in ids:
        target_token = target_tokenizer.id_to_token(int(i))
        draft_token = draft_tokenizer.id_to_token(int(i))
        if target_token != draft_token:
            return (
                f"their tokenizers disagree on id {int(i)} (target "
                f"{target_token!r}, draft {draft_token!r})"
            )
    return None


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


def within_vocabulary(model, token_ids):
    """`token_ids` with ids past `model`'s vocabulary clamped into it.

    Only a draft whose vocabulary is smaller than the target's (padding only,
    see `match_vocabulary`) can be fed such ids: padding ids that the target
    itself generated. Whatever the draft proposes after them, the output
    stays exact (any q is); clamping keeps its embedding lookup in range.
    """
    return ops.minimum(token_ids, vocabulary_size(model) - 1)


def init_state(model, token_ids, padding_mask):
    """Build a draft's own decoding state (and encoder pass) for this batch."""
    token_ids = within_vocabulary(model, token_ids)
    if is_model_free(model):
        return model.init_state(token_ids, padding_mask)
    if not is_seq2seq(model):
        return build_cache(model, token_ids, padding_mask)
    inputs = current_generate_inputs(model)
    encoder_ids = within_vocabulary(model, inputs["encoder_token_ids"])
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
    token_ids = within_vocabulary(model, token_ids)
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


def ignore_t5_mask_warning():
    """Silence Keras' "Layer 'self_attention' (of type T5MultiHeadAttention)
    ... will therefore destroy the mask information" UserWarning, printed
    whenever a T5 model is built: T5's attention reads the padding mask from
    its inputs, not from Keras' implicit mask, so nothing is lost. Only that
    message is filtered, for this process."""
    import warnings

    warnings.filterwarnings(
        "ignore",
        message=r".*\(of type T5MultiHeadAttention\).*destroy the mask",
        category=UserWarning,
    )
