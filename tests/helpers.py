"""Test helpers shared by the test files: ragged batches, `generate()` with a
sampler, many independent sampled `generate()` runs in one program, and the
exact sequence distribution of a tiny target to compare them with."""

import itertools

import jax
import keras
import keras_hub
import numpy as np
from tiny_models import generate_inputs

# Vocabulary of `tiny_gpt2`, small enough to enumerate every continuation.
VOCAB = 5


def ragged_batch(prompts, max_length):
    """Right-padded `(token_ids, padding_mask)`, each `(len(prompts),
    max_length)`, for prompts of different lengths (an empty one too)."""
    token_ids = np.zeros((len(prompts), max_length), "int32")
    padding_mask = np.zeros((len(prompts), max_length), bool)
    for row, prompt in enumerate(prompts):
        token_ids[row, : len(prompt)] = prompt
        padding_mask[row, : len(prompt)] = True
    return token_ids, padding_mask


def ragged_inputs(prompts, max_length):
    """`ragged_batch` as a `generate()` input dict."""
    token_ids, padding_mask = ragged_batch(prompts, max_length)
    return {"token_ids": token_ids, "padding_mask": padding_mask}


def generate(model, sampler, token_ids, padding_mask, family="gpt2", **kwargs):
    """`model.generate()` with `sampler` compiled in, no stop token unless
    given: `{"token_ids", "padding_mask"}` as numpy arrays."""
    model.compile(sampler=sampler)
    kwargs.setdefault("stop_token_ids", None)
    out = model.generate(generate_inputs(family, token_ids, padding_mask), **kwargs)
    return {
        k: np.asarray(v) for k, v in out.items() if k in ("token_ids", "padding_mask")
    }


def sample_many(target, sampler, inputs, num_copies, seed):
    """`num_copies` independent `generate()` runs in one vmapped program:
    each copy runs the real `generate_step` with its own seed state.

    Args:
        inputs: the `generate()` inputs dict (causal LM or seq2seq).

    Returns:
        `(num_copies, batch, max_length)` token ids (decoder ids for a
        seq2seq target).
    """
    target.compile(sampler=sampler)
    key = "decoder_token_ids" if "decoder_token_ids" in inputs else "token_ids"
    sampler_vars = sampler.variables
    seed_slot = [
        i for i, v in enumerate(sampler_vars) if v is sampler.seed_generator.state
    ][0]
    values = [v.value for v in sampler_vars]
    model_vars = target.trainable_variables + target.non_trainable_variables
    model_values = [v.value for v in model_vars]

    def one(seed_state):
        state = list(values)
        state[seed_slot] = seed_state
        mapping = list(zip(sampler_vars, state)) + list(zip(model_vars, model_values))
        with keras.StatelessScope(state_mapping=mapping):
            out = target.generate_step(inputs, stop_token_ids=None)
        return out[key]

    seeds = np.stack([np.full(num_copies, seed), np.arange(num_copies)], 1)
    run = jax.jit(jax.vmap(one))
    chunks = [np.asarray(run(s.astype("uint32"))) for s in np.array_split(seeds, 4)]
    return np.concatenate(chunks)  # (num_copies, batch, max_length)


def tiny_gpt2(seed, hidden=16, logit_scale=3.0):
    """A 2-layer GPT-2 over `VOCAB` tokens with sharp next-token
    distributions, for exact enumeration of its sequence distribution."""
    keras.utils.set_random_seed(seed)
    backbone = keras_hub.models.GPT2Backbone(
        vocabulary_size=VOCAB,
        num_layers=2,
        num_heads=2,
        hidden_dim=hidden,
        intermediate_dim=2 * hidden,
        max_sequence_length=16,
    )
    model = keras_hub.models.GPT2CausalLM(backbone=backbone, preprocessor=None)
    # Sharper, less uniform next-token distributions than the random init.
    embedding = backbone.token_embedding.embeddings
    embedding.assign(embedding * logit_scale)
    return model


# ---- the base samplers' distributions, written independently in numpy ----
def reference_probs(logits, base):
    logits = logits.astype("float64") / base.temperature
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    if type(base) is keras_hub.samplers.RandomSampler:
        return probs
    order = np.argsort(-probs, axis=-1, kind="stable")
    sorted_probs = np.take_along_axis(probs, order, -1)
    rank = np.arange(probs.shape[-1])
    if isinstance(base, keras_hub.samplers.TopKSampler):
        keep_sorted = np.broadcast_to(rank < base.k, sorted_probs.shape)
    else:  # TopPSampler: keep a token if the mass ranked before it is <= p.
        cumulative = np.cumsum(sorted_probs, -1)
        before = np.concatenate(
            [np.zeros_like(cumulative[..., :1]), cumulative[..., :-1]], -1
        )
        keep_sorted = (before <= base.p) | (rank == 0)
    keep = np.zeros_like(keep_sorted)
    np.put_along_axis(keep, order, keep_sorted, -1)
    kept = np.where(keep, probs, 0.0)
    return kept / kept.sum(-1, keepdims=True)


def exact_joint(target, prompt, num_new, base):
    """P(continuation) for every continuation of `num_new` tokens."""
    continuations = np.array(
        list(itertools.product(range(VOCAB), repeat=num_new)), "int32"
    )
    n = len(continuations)
    ids = np.concatenate([np.tile(prompt, (n, 1)), continuations], axis=1)
    logits = np.asarray(
        target({"token_ids": ids, "padding_mask": np.ones_like(ids, bool)})
    )
    joint = np.ones(n)
    for t in range(num_new):
        probs = reference_probs(logits[:, len(prompt) - 1 + t], base)
        joint *= probs[np.arange(n), continuations[:, t]]
    return joint


def tv_and_noise_floor(samples, exact, seed=0):
    """TV(empirical, exact), and mean/std of TV for an exact sampler."""
    codes = np.ravel_multi_index(samples.T, (VOCAB,) * samples.shape[1])
    counts = np.bincount(codes, minlength=len(exact))
    tv = 0.5 * np.abs(counts / len(samples) - exact).sum()
    rng = np.random.default_rng(seed)
    floor = [
        0.5 * np.abs(rng.multinomial(len(samples), exact) / len(samples) - exact).sum()
        for _ in range(200)
    ]
    return tv, np.mean(floor), np.std(floor), counts
