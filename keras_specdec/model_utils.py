"""What the sampler needs from a KerasHub model, in one place.

KerasHub's causal LMs share `call_with_cache(token_ids, cache, index)` and a
private `_build_cache(token_ids, ...)`; the multimodal Gemma families take
extra optional arguments. These helpers call both uniformly for text-only
generation, so the sampler itself has no per-family code.
"""

import inspect

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


def vocabulary_size(model):
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
