"""A Gemma4 MTP assistant two ways: KerasHub's `generate(assistant_model=...)`
and `keras_specdec.SpeculativeSampler(draft=assistant)`, side by side.

Builds a tiny random Gemma4 target and assistant offline (the shapes of
`shared/README.md`; no preset download), then measures on the same weights
and prompts:

1. greedy, a ragged batch (prompts of 3 and 5 tokens), no stop token: each
   path's output against the target's own greedy `generate()` (rows that
   differ, prompt tokens overwritten);
2. T=1 sampling, `--num-rows` rows of one 4-token prompt, 3 new tokens: the
   total-variation distance of each new position's marginal from the
   target's exact marginal (enumerated with full forward passes), for plain
   sampling (the noise level at this many rows), KerasHub's path and ours.

    python scripts/comparison/gemma4_assistant_compare.py
    python scripts/comparison/gemma4_assistant_compare.py --head centroid \
        --num-rows 8000
"""

import argparse
import itertools
import os

os.environ.setdefault("KERAS_BACKEND", "jax")

import keras  # noqa: E402
import keras_hub  # noqa: E402
import numpy as np  # noqa: E402

import keras_specdec  # noqa: E402


def build(vocabulary_size, use_ordered_embeddings, seed, gamma):
    """The tiny target (4 layers, d=64) and assistant (2 KV-shared layers,
    d=32) of `shared/README.md`, randomly initialised from `seed`."""
    keras.utils.set_random_seed(seed)
    common = dict(vocabulary_size=vocabulary_size, image_size=16, head_dim=16,
                  sliding_window_size=8, sliding_window_pattern=2)  # fmt: skip
    target = keras_hub.models.Gemma4CausalLM(
        backbone=keras_hub.models.Gemma4Backbone(
            num_layers=4, num_query_heads=4, num_key_value_heads=2,
            hidden_dim=64, intermediate_dim=128, **common,
        ),
        preprocessor=None,
    )  # fmt: skip
    num_centroids = 8 if vocabulary_size % 8 == 0 else 1
    assistant = keras_hub.models.Gemma4AssistantCausalLM(
        backbone=keras_hub.models.Gemma4Backbone(
            num_layers=2, num_query_heads=2, num_key_value_heads=1,
            hidden_dim=32, intermediate_dim=64, num_kv_shared_layers=2, **common,
        ),
        backbone_hidden_size=64,
        num_centroids=num_centroids,
        centroid_intermediate_top_k=max(1, num_centroids // 2),
        use_ordered_embeddings=use_ordered_embeddings,
        num_speculative_tokens=gamma,
    )  # fmt: skip
    if use_ordered_embeddings:
        # A preset loads this ordering; at init it is all zeros.
        order = np.random.default_rng(seed).permutation(vocabulary_size)
        assistant.token_ordering.assign(order.astype("float32"))
    return target, assistant


def ragged(prompts, max_length):
    token_ids = np.zeros((len(prompts), max_length), "int32")
    padding_mask = np.zeros((len(prompts), max_length), bool)
    for row, prompt in enumerate(prompts):
        token_ids[row, : len(prompt)] = prompt
        padding_mask[row, : len(prompt)] = True
    return {"token_ids": token_ids, "padding_mask": padding_mask}


def generate(target, sampler, inputs, assistant=None):
    target.compile(sampler=sampler)
    out = target.generate(dict(inputs), stop_token_ids=None, assistant_model=assistant)
    return np.asarray(out["token_ids"])


def exact_marginals(target, prompt, num_new, vocabulary_size):
    """`(num_new, vocab)`: the exact T=1 marginal of each new position."""
    continuations = np.array(
        list(itertools.product(range(vocabulary_size), repeat=num_new)), "int32"
    )
    n = len(continuations)
    ids = np.concatenate([np.tile(prompt, (n, 1)), continuations], axis=1)
    joint = np.ones(n)
    for chunk in np.array_split(np.arange(n), max(1, n // 4096)):
        x = ids[chunk]
        logits = np.asarray(
            target({
                "token_ids": x,
                "padding_mask": np.ones_like(x, bool),
                "position_ids": np.tile(np.arange(x.shape[1], dtype="int32"),
                                        (len(x), 1)),
            }),
            "float64",
        )  # fmt: skip
        for t in range(num_new):
            step = logits[:, len(prompt) - 1 + t]
            probs = np.exp(step - step.max(-1, keepdims=True))
            probs /= probs.sum(-1, keepdims=True)
            joint[chunk] *= probs[np.arange(len(x)), continuations[chunk, t]]
    return np.stack([
        np.bincount(continuations[:, t], weights=joint, minlength=vocabulary_size)
        for t in range(num_new)
    ])  # fmt: skip


def position_tv(samples, marginals):
    """TV distance of each new position's empirical marginal from the exact."""
    vocab = marginals.shape[1]
    return [
        0.5 * np.abs(np.bincount(samples[:, t], minlength=vocab) / len(samples)
                     - marginals[t]).sum()
        for t in range(marginals.shape[0])
    ]  # fmt: skip


def main():
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--head", choices=("dense", "centroid"), default="dense",
        help="The assistant's output head: dense (tied embedding, "
        "use_ordered_embeddings=False) or centroid (use_ordered_embeddings=True).",
    )  # fmt: skip
    parser.add_argument(
        "--vocabulary-size", type=int, default=32,
        help="Vocabulary of the tiny models; 3-token continuations are "
        "enumerated, so keep it small.",
    )  # fmt: skip
    parser.add_argument(
        "--num-rows", type=int, default=4000,
        help="Rows of the T=1 batch (one sample of 3 new tokens per row).",
    )  # fmt: skip
    parser.add_argument(
        "--gamma", type=int, default=3,
        help="Proposals per round, for both paths (the assistant's "
        "num_speculative_tokens for KerasHub's).",
    )  # fmt: skip
    parser.add_argument(
        "--seed", type=int, default=0, help="Seed of the random weights."
    )
    args = parser.parse_args()
    target, assistant = build(
        args.vocabulary_size, args.head == "centroid", args.seed, args.gamma
    )

    print(f"## Greedy, ragged prompts of 3 and 5 tokens ({args.head} head)\n")
    inputs = ragged([[1, 2, 3], [4, 5, 6, 7, 8]], 10)
    plain = generate(target, "greedy", inputs)
    ours_sampler = keras_specdec.SpeculativeSampler(assistant, args.gamma)
    outputs = {
        "KerasHub generate(assistant_model=...)": generate(
            target, "greedy", inputs, assistant
        ),
        "keras_specdec SpeculativeSampler": generate(target, ours_sampler, inputs),
    }
    print(f"target's own greedy: {plain.tolist()}")
    print(
        "| path | output | rows differing from plain greedy | prompt tokens changed |"
    )
    print("|---|---|---|---|")
    mask = inputs["padding_mask"]
    for name, out in outputs.items():
        differ = int((out != plain).any(1).sum())
        overwritten = int((out[mask] != inputs["token_ids"][mask]).sum())
        print(f"| {name} | {out.tolist()} | {differ} of {len(out)} | {overwritten} |")

    print(f"\n## T=1, {args.num_rows} rows of one 4-token prompt, 3 new tokens\n")
    prompt = np.array([1, 2, 3, 4], "int32")
    marginals = exact_marginals(target, prompt, 3, args.vocabulary_size)
    inputs = ragged([prompt.tolist()] * args.num_rows, 7)
    t1 = keras_hub.samplers.RandomSampler(temperature=1.0, seed=1)
    ours_sampler = keras_specdec.SpeculativeSampler(
        assistant, args.gamma,
        base_sampler=keras_hub.samplers.RandomSampler(temperature=1.0), seed=1,
    )  # fmt: skip
    runs = {
        "plain sampling (noise level)": generate(target, t1, inputs),
        "KerasHub generate(assistant_model=...)": generate(
            target, keras_hub.samplers.RandomSampler(temperature=1.0, seed=1),
            inputs, assistant,
        ),
        "keras_specdec SpeculativeSampler": generate(target, ours_sampler, inputs),
    }  # fmt: skip
    print("| path | TV position 1 | TV position 2 | TV position 3 |")
    print("|---|---|---|---|")
    for name, out in runs.items():
        tv = position_tv(out[:, 4:7], marginals)
        print(f"| {name} | " + " | ".join(f"{x:.3f}" for x in tv) + " |")
    stats = ours_sampler.stats()
    print(
        f"\nkeras_specdec at T=1: acceptance {stats['acceptance_rate']:.2f}, "
        f"{stats['tokens_per_target_call']:.2f} tokens per target call."
    )


if __name__ == "__main__":
    main()
