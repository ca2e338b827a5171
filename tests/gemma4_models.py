"""Tiny Gemma4 target and MTP assistants (both output heads), built offline.

Seeded, so every call builds the same weights. The vocabulary is small
enough to enumerate every 3-token continuation (`exact_joint`), and the
target's next-token distributions are sharpened (like `helpers.tiny_gpt2`)
so that a sampler that is not exact shows up in a total-variation test.
"""

import itertools

import keras
import keras_hub
import numpy as np
from helpers import reference_probs

VOCAB = 8  # 8^3 = 512 continuations of 3 tokens
NUM_CENTROIDS = 4  # 2 tokens per centroid
CENTROID_TOP_K = 2  # 2 active centroids: 4 of 8 tokens get a logit of their own


def tiny_gemma4_target(
    seed=0, logit_scale=0.5, post_norm_boost=8.0, final_logit_cap=30.0
):
    """A 4-layer Gemma4 target (sliding / full layers alternate).

    At random initialisation the tied embedding dominates the residual
    stream and greedy decoding repeats the last token forever; the two
    adjustments below give varied greedy continuations (rows stop at
    different positions) and 3-token joint distributions of 4-4.6 nats
    (neither near-deterministic nor near-uniform; measured).

    Args:
        seed: weight seed.
        logit_scale: the tied embedding table is multiplied by this.
        post_norm_boost: added to the scale of every post-attention and
            post-feed-forward norm (Gemma norms multiply by 1 + scale): the
            layers' outputs outweigh the token's own embedding.
        final_logit_cap: `Gemma4CausalLM(final_logit_cap=...)`, applied to
            the target's logits and, as KerasHub does, to its assistant's.
    """
    keras.utils.set_random_seed(seed)
    backbone = keras_hub.models.Gemma4Backbone(
        vocabulary_size=VOCAB,
        image_size=16,
        num_layers=4,
        num_query_heads=4,
        num_key_value_heads=2,
        hidden_dim=64,
        intermediate_dim=128,
        head_dim=16,
        sliding_window_size=8,
        sliding_window_pattern=2,
    )
    embedding = backbone.token_embedding.embeddings
    embedding.assign(embedding * logit_scale)
    for weight in backbone.weights:
        if "post_attention_norm" in weight.path or "post_ffw_norm" in weight.path:
            weight.assign(weight + post_norm_boost)
    return keras_hub.models.Gemma4CausalLM(
        backbone=backbone, preprocessor=None, final_logit_cap=final_logit_cap
    )


def tiny_gemma4_assistant(use_ordered_embeddings, seed=1, num_speculative_tokens=3):
    """A 2-layer assistant for `tiny_gemma4_target` (all layers KV-shared).

    Args:
        use_ordered_embeddings: True for the centroid head (logits of the
            tokens outside the active centroids are filled with the smallest
            active logit - 1), False for the dense tied-embedding head.
        seed: weight seed (also the centroid head's token ordering).
    """
    keras.utils.set_random_seed(seed)
    backbone = keras_hub.models.Gemma4Backbone(
        vocabulary_size=VOCAB,
        image_size=16,
        num_layers=2,
        num_query_heads=2,
        num_key_value_heads=1,
        hidden_dim=32,
        intermediate_dim=64,
        head_dim=16,
        num_kv_shared_layers=2,
        sliding_window_size=8,
        sliding_window_pattern=2,
    )
    assistant = keras_hub.models.Gemma4AssistantCausalLM(
        backbone=backbone,
        backbone_hidden_size=64,
        num_centroids=NUM_CENTROIDS,
        centroid_intermediate_top_k=CENTROID_TOP_K,
        use_ordered_embeddings=use_ordered_embeddings,
        num_speculative_tokens=num_speculative_tokens,
    )
    if use_ordered_embeddings:
        # The ordering is a weight loaded from the preset (zeros at init,
        # which would send every centroid to token 0): a fixed permutation.
        order = np.random.default_rng(seed).permutation(VOCAB)
        assistant.token_ordering.assign(order.astype("float32"))
    return assistant


def target_logits(target, token_ids):
    """Full forward pass (no cache): `(n, length, vocab)` logits."""
    token_ids = np.asarray(token_ids, "int32")
    n, length = token_ids.shape
    return np.asarray(
        target(
            {
                "token_ids": token_ids,
                "padding_mask": np.ones_like(token_ids, bool),
                "position_ids": np.tile(np.arange(length, dtype="int32"), (n, 1)),
            }
        )
    )


def exact_joint(target, prompt, num_new, base):
    """P(continuation) for every continuation of `num_new` tokens, in
    `itertools.product(range(VOCAB), repeat=num_new)` order."""
    continuations = np.array(
        list(itertools.product(range(VOCAB), repeat=num_new)), "int32"
    )
    n = len(continuations)
    ids = np.concatenate([np.tile(prompt, (n, 1)), continuations], axis=1)
    logits = target_logits(target, ids)
    joint = np.ones(n)
    for t in range(num_new):
        probs = reference_probs(logits[:, len(prompt) - 1 + t], base)
        joint *= probs[np.arange(n), continuations[:, t]]
    return joint


def tv_and_noise_floor(samples, exact, seed=0):
    """TV(empirical, exact) of `samples` `(num_samples, num_new)`, and the
    mean / std of the TV of 200 exact multinomial samples of that size."""
    codes = np.ravel_multi_index(samples.T, (VOCAB,) * samples.shape[1])
    counts = np.bincount(codes, minlength=len(exact))
    tv = 0.5 * np.abs(counts / len(samples) - exact).sum()
    rng = np.random.default_rng(seed)
    floor = [
        0.5 * np.abs(rng.multinomial(len(samples), exact) / len(samples) - exact).sum()
        for _ in range(200)
    ]
    return tv, np.mean(floor), np.std(floor), counts
