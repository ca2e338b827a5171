"""What a user meets before generation starts: the sampler's registry name,
config round trips, preset loading errors, argument checks, context-length and
vocabulary checks (and the padding-only vocabulary mapping)."""

import keras
import keras_hub
import numpy as np
import pytest
from tiny_models import VOCAB, generate_inputs, noisy_copy, tiny_causal_lm

import keras_specdec
from keras_specdec import drafts, model_utils, models, rejection

# ---------------------------------------------------------------------------
# Tiny GPT-2 models that carry a tokenizer (preset assets, vocabulary checks).

LETTERS = "abcdefghijklmnopqrstuvwxyz"


def tiny_tokenizer():
    """A 40-token byte-pair tokenizer: letters, the space marker, 12 merges
    and the end token last (so that it is not the padding id 0)."""
    tokens = list(LETTERS) + ["Ġ"] + ["Ġ" + c for c in LETTERS[:12]]
    vocabulary = {token: i for i, token in enumerate(tokens)}
    vocabulary["<|endoftext|>"] = len(vocabulary)
    merges = ["Ġ " + c for c in LETTERS[:12]]
    return keras_hub.models.GPT2Tokenizer(vocabulary=vocabulary, merges=merges)


TOKENIZER_SIZE = 40


def gpt2_with_tokenizer(vocabulary_size, layers=1, hidden=16, seed=0):
    keras.utils.set_random_seed(seed)
    backbone = keras_hub.models.GPT2Backbone(
        vocabulary_size=vocabulary_size,
        num_layers=layers,
        num_heads=2,
        hidden_dim=hidden,
        intermediate_dim=2 * hidden,
        max_sequence_length=32,
    )
    preprocessor = keras_hub.models.GPT2CausalLMPreprocessor(
        tokenizer=tiny_tokenizer(), sequence_length=16
    )
    return keras_hub.models.GPT2CausalLM(backbone=backbone, preprocessor=preprocessor)


def copy_with_vocabulary(model, vocabulary_size):
    """`model` with its (tied) embedding table padded with zero rows or cut to
    `vocabulary_size` rows; every other weight the same."""
    config = model.backbone.get_config()
    config["vocabulary_size"] = vocabulary_size
    backbone = keras_hub.models.GPT2Backbone.from_config(config)
    weights = []
    for w in model.backbone.get_weights():
        if w.shape[0] == model.backbone.vocabulary_size and w.ndim == 2:
            w = w[:vocabulary_size]
            padding = np.zeros((vocabulary_size - len(w), w.shape[1]), w.dtype)
            w = np.concatenate([w, padding])
        weights.append(w)
    backbone.set_weights(weights)
    preprocessor = keras_hub.models.GPT2CausalLMPreprocessor(
        tokenizer=tiny_tokenizer(), sequence_length=16
    )
    return keras_hub.models.GPT2CausalLM(backbone=backbone, preprocessor=preprocessor)


def token_batch(max_length=16):
    token_ids = np.zeros((2, max_length), "int32")
    padding_mask = np.zeros((2, max_length), bool)
    for row, prompt in enumerate([[1, 2, 3], [4, 5, 6, 7, 8]]):
        token_ids[row, : len(prompt)] = prompt
        padding_mask[row, : len(prompt)] = True
    return generate_inputs("gpt2", token_ids, padding_mask)


def generated_ids(model, sampler, inputs=None):
    model.compile(sampler=sampler)
    out = model.generate(inputs or token_batch(), stop_token_ids=None)
    return np.asarray(out["token_ids"])


# ---------------------------------------------------------------------------
# Registry name.


def test_registry_names_resolve_to_our_sampler():
    # KerasHub's own "speculative" is its Gemma4-only sampler, not ours.
    assert not isinstance(
        keras_hub.samplers.get("speculative"), keras_specdec.SpeculativeSampler
    )
    assert keras_hub.samplers.get("speculative_decoding") is (
        keras_specdec.SpeculativeSampler
    )
    unigram = drafts.UnigramDraft(np.ones(VOCAB))
    config = keras_specdec.SpeculativeSampler(unigram, 3).get_config()
    for class_name in ("speculative_decoding", "keras_specdec>SpeculativeSampler"):
        sampler = keras_hub.samplers.get({"class_name": class_name, "config": config})
        assert isinstance(sampler, keras_specdec.SpeculativeSampler)
        assert sampler.num_speculative_tokens == 3

    # The name alone cannot carry a draft: a clear error, not a TypeError.
    target = tiny_causal_lm("gpt2", "target", seed=1)
    target.compile(sampler="speculative_decoding")
    with pytest.raises(ValueError, match="cannot carry the draft"):
        target.generate(token_batch(), stop_token_ids=None)
    with pytest.raises(ValueError, match="needs a draft"):
        keras_specdec.SpeculativeSampler()


# ---------------------------------------------------------------------------
# Config round trips: same outputs, or a clear error.


def test_preset_path_draft_round_trips_with_identical_output(tmp_path):
    # A draft with a tokenizer: its preset has vocabulary files, which Keras'
    # safe mode (used by `keras_hub.samplers.get`) refused to load.
    target = gpt2_with_tokenizer(TOKENIZER_SIZE, seed=1)
    draft = copy_with_vocabulary(target, TOKENIZER_SIZE)
    draft.set_weights(noisy_copy(draft, noise=0.3, seed=2).get_weights())
    draft.save_to_preset(str(tmp_path / "draft"))
    target.preprocessor = None
    sampler = keras_specdec.SpeculativeSampler(str(tmp_path / "draft"), 3, seed=5)
    restored = keras_hub.samplers.get(keras_hub.samplers.serialize(sampler))
    assert restored.get_config() == sampler.get_config()
    for a, b in zip(restored.draft.get_weights(), draft.get_weights()):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(
        generated_ids(target, restored), generated_ids(target, sampler)
    )
    assert restored.stats() == sampler.stats()  # same draft: same acceptances
    assert 0 < sampler.stats()["acceptance_rate"] < 1


def test_model_free_drafts_round_trip_with_identical_output():
    corpus = np.random.default_rng(0).integers(0, VOCAB, 300)
    inputs = token_batch(12)
    token_ids, padding_mask = inputs["token_ids"], inputs["padding_mask"]
    samplers = {}
    for draft in (
        drafts.UnigramDraft.fit(corpus, VOCAB),
        drafts.BigramDraft.fit(corpus, VOCAB, top_k=3),
        drafts.PromptLookupDraft(VOCAB, 2),
    ):
        sampler = keras_specdec.SpeculativeSampler(draft, 3)
        restored = keras_hub.samplers.get(keras_hub.samplers.serialize(sampler))
        assert type(restored.draft) is type(draft)
        # The same proposals: identical draft logits at every position.
        adapters = [models.adapt(d) for d in (draft, restored.draft)]
        states = [a.init_state(token_ids, padding_mask) for a in adapters]
        for index in range(3, 11):
            chunk = token_ids[:, index : index + 1]
            logits = []
            for i, adapter in enumerate(adapters):
                out, _, states[i] = adapter.decode(states[i], chunk, index)
                logits.append(np.asarray(out))
            np.testing.assert_array_equal(logits[0], logits[1])
        samplers[type(draft).__name__] = (sampler, restored)
    # End to end for one of them (greedy: the acceptance counts depend on q).
    target = tiny_causal_lm("gpt2", "draft", seed=1)
    sampler, restored = samplers["BigramDraft"]
    np.testing.assert_array_equal(
        generated_ids(target, restored, inputs), generated_ids(target, sampler, inputs)
    )
    assert restored.stats() == sampler.stats()


def test_model_draft_config_is_refused_not_rebuilt_with_random_weights():
    draft = tiny_causal_lm("gpt2", "draft", seed=3)
    sampler = keras_specdec.SpeculativeSampler(draft, 2)
    config = keras_hub.samplers.serialize(sampler)
    with pytest.raises(ValueError, match="save_to_preset") as error:
        keras_hub.samplers.get(config)
    assert "random weights" in str(error.value)
    # What the message offers works: the model itself in place of its config.
    again = keras_specdec.SpeculativeSampler.from_config(
        {**sampler.get_config(), "draft": draft}
    )
    assert again.draft is draft


# ---------------------------------------------------------------------------
# Preset names and paths that cannot be loaded (never touches the network).


def test_unavailable_presets_give_clear_errors(monkeypatch, tmp_path):
    def no_network(*args, **kwargs):
        raise AssertionError("the check must not try to download")

    monkeypatch.setattr(keras_hub.models.CausalLM, "from_preset", no_network)
    with pytest.raises(ValueError, match="Unknown draft preset 'gpt2_base_enn'") as e:
        keras_specdec.SpeculativeSampler("gpt2_base_enn")
    assert "'gpt2_base_en'" in str(e.value)  # the close match
    missing = str(tmp_path / "no_such_draft")
    with pytest.raises(ValueError, match="does not exist"):
        keras_specdec.SpeculativeSampler(missing)

    # A real preset name whose download fails (offline; what kagglehub raises
    # is a `requests.ConnectionError`, an OSError like this one).
    def offline(*args, **kwargs):
        raise ConnectionError("Max retries exceeded: api.kaggle.com")

    monkeypatch.setattr(keras_hub.models.CausalLM, "from_preset", offline)
    with pytest.raises(ValueError, match="'gpt2_base_en'") as e:
        model_utils.load_causal_lm("gpt2_base_en")
    message = str(e.value)
    assert "save_to_preset" in message and "network" in message
    assert "api.kaggle.com" in message  # the cause is kept, and chained
    assert isinstance(e.value.__cause__, ConnectionError)


# ---------------------------------------------------------------------------
# Constructor arguments.


def test_arguments_are_checked_in_the_constructor():
    draft = drafts.UnigramDraft(np.ones(VOCAB))
    for bad in ("abc", -1, -0.5, float("nan"), float("inf"), True):
        with pytest.raises(ValueError, match="cost_coefficient"):
            keras_specdec.SpeculativeSampler(draft, "auto", cost_coefficient=bad)
    sampler = keras_specdec.SpeculativeSampler(
        draft, np.int64(4), max_speculative_tokens=np.int32(6), cost_coefficient=0
    )
    assert sampler.num_speculative_tokens == 4
    assert type(sampler.num_speculative_tokens) is int
    assert sampler.max_speculative_tokens == 6
    assert sampler.cost_coefficient == 0.0
    assert keras_specdec.SpeculativeSampler(
        draft, "auto", cost_coefficient=np.float32(0.25)
    ).cost_coefficient == pytest.approx(0.25)
    for bad in (True, np.bool_(True), 0, -2, 2.0, "4", None):
        with pytest.raises(ValueError, match="num_speculative_tokens"):
            keras_specdec.SpeculativeSampler(draft, bad)
    with pytest.raises(ValueError, match="max_speculative_tokens"):
        keras_specdec.SpeculativeSampler(draft, "auto", max_speculative_tokens=0)


# ---------------------------------------------------------------------------
# Context length, checked when generate() traces the sampler.


def test_context_shorter_than_max_length_is_refused_before_compiling():
    def gpt2(layers, hidden, max_sequence_length, seed):
        keras.utils.set_random_seed(seed)
        backbone = keras_hub.models.GPT2Backbone(
            vocabulary_size=VOCAB,
            num_layers=layers,
            num_heads=2,
            hidden_dim=hidden,
            intermediate_dim=2 * hidden,
            max_sequence_length=max_sequence_length,
        )
        return keras_hub.models.GPT2CausalLM(backbone=backbone, preprocessor=None)

    target, short = gpt2(2, 32, 64, 1), gpt2(1, 16, 16, 2)
    sampler = keras_specdec.SpeculativeSampler(short, 2)
    with pytest.raises(ValueError, match=r"draft .* 16 positions.* max_length 24"):
        generated_ids(target, sampler, token_batch(24))
    assert sampler.trace_count == 0  # raised before the loop was traced
    # max_length within the draft's context works.
    assert generated_ids(target, sampler, token_batch(16)).shape == (2, 16)
    # Model-free drafts and position schemes without a table have no limit.
    assert models.adapt(drafts.PromptLookupDraft(VOCAB)).context_length is None
    assert model_utils.context_length(tiny_causal_lm("llama", "draft")) is None


# ---------------------------------------------------------------------------
# Vocabularies that differ only by padding.


def test_match_vocabulary_pads_with_zero_probability_or_renormalises():
    logits = np.random.default_rng(0).normal(size=(2, 3, 6)).astype("float32")

    def softmax(x):
        e = np.exp(x - x.max(-1, keepdims=True))
        return e / e.sum(-1, keepdims=True)

    padded = np.asarray(model_utils.match_vocabulary(logits, 9))
    assert padded.shape == (2, 3, 9)
    q = softmax(padded)
    np.testing.assert_array_equal(q[..., 6:], 0.0)  # exactly zero
    np.testing.assert_allclose(q[..., :6], softmax(logits), rtol=1e-6)

    cut = np.asarray(model_utils.match_vocabulary(logits, 4))
    kept = softmax(logits)[..., :4]
    np.testing.assert_allclose(
        softmax(cut), kept / kept.sum(-1, keepdims=True), rtol=1e-6
    )
    assert model_utils.match_vocabulary(logits, 6) is logits
    # The base samplers' adjustments keep the padded entries at exactly 0.
    for base in ("random", "top_k", keras_hub.samplers.TopPSampler(p=0.9)):
        base = keras_hub.samplers.get(base) if isinstance(base, str) else base
        q = np.asarray(rejection.adjusted_probabilities(padded, base))
        assert np.isfinite(q).all()
        np.testing.assert_array_equal(q[..., 6:], 0.0)
        np.testing.assert_allclose(q.sum(-1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("draft_vocabulary", [TOKENIZER_SIZE, 64])
def test_vocabularies_differing_by_padding_are_exact(draft_vocabulary):
    # Target: 48 rows for a 40-token tokenizer. Drafts: the target's weights
    # with the table cut to the tokenizer (smaller) or padded to 64 (larger).
    target = gpt2_with_tokenizer(48, layers=2, hidden=32, seed=1)
    draft = copy_with_vocabulary(target, draft_vocabulary)
    prompts = ["Ġa b c", "Ġd Ġe f g"]
    target.compile(sampler="greedy")
    expected = target.generate(prompts, max_length=16, stop_token_ids=None)
    sampler = keras_specdec.SpeculativeSampler(draft, 3)
    target.compile(sampler=sampler)
    output = target.generate(prompts, max_length=16, stop_token_ids=None)
    assert list(output) == list(expected)
    # The draft's q is the target's p on the shared ids. The larger draft
    # agrees everywhere; the smaller one cannot propose the padding ids 40..47
    # that this random target sometimes picks (0.88 here), and is fed them
    # clamped into its table (`model_utils.within_vocabulary`).
    alpha = sampler.stats()["acceptance_rate"]
    assert alpha == 1.0 if draft_vocabulary > 48 else 0.5 < alpha < 1.0


def test_real_vocabulary_mismatch_is_refused():
    target = gpt2_with_tokenizer(48, seed=1)
    draft = copy_with_vocabulary(target, 64)
    vocabulary = dict(draft.preprocessor.tokenizer.vocabulary)
    vocabulary["a"], vocabulary["b"] = vocabulary["b"], vocabulary["a"]
    draft.preprocessor.tokenizer = keras_hub.models.GPT2Tokenizer(
        vocabulary=vocabulary, merges=draft.preprocessor.tokenizer.merges
    )
    sampler = keras_specdec.SpeculativeSampler(draft, 2)
    target.compile(sampler=sampler)
    with pytest.raises(ValueError, match="disagree on id 0"):
        target.generate(["Ġa b"], max_length=12)
    # Without tokenizers the two cannot be compared: refused, saying why.
    other = copy_with_vocabulary(target, 64)
    target.preprocessor = other.preprocessor = None
    sampler = keras_specdec.SpeculativeSampler(other, 2)
    target.compile(sampler=sampler)
    with pytest.raises(ValueError, match="no tokenizer attached"):
        target.generate(token_batch(), stop_token_ids=None)
