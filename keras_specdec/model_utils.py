"""Model helpers around the one model interface (`keras_specdec.models`):
loading presets with clear errors, vocabulary and tokenizer checks, context
lengths, and the encoder inputs of the current `generate()` call.

Encoder-decoder drafts run their own encoder, on the encoder inputs of the
`generate()` batch. KerasHub's `generate_step` does not pass those to the
sampler, so `publish_generate_inputs` wraps the family's `generate_step` once
(at sampler construction) to publish its `inputs` in a context variable for
the duration of the call. Inside `generate()`'s jit these are the traced
arguments of the current call, never values frozen into the program, so a
second batch of the same shape that hits the jit cache gets its own inputs.
"""

import contextlib
import contextvars
import difflib
import functools
import os

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


def vocabulary_size(model):
    """`model.backbone.vocabulary_size` (a model-free draft's adapter reads
    its own `vocabulary_size`)."""
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
    backbone = getattr(model, "backbone", None)
    if backbone is None:  # no layers (a model-free draft): no table
        return None
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


@contextlib.contextmanager
def no_generate_inputs():
    """A scope in which no encoder inputs are published: a causal target's
    `generate()` has none, and inputs left over from an earlier call (or a
    test that set them) must not leak into its drafts."""
    token = _GENERATE_INPUTS.set(None)
    try:
        yield
    finally:
        _GENERATE_INPUTS.reset(token)


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
