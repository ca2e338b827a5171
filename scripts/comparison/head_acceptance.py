"""Tokens per target call of the code pair's draft head next to its draft model.

    python scripts/comparison/head_acceptance.py --gamma 4 --new-tokens 128

Runs `generate()` at batch 1 on each held-out prompt of the code pair
(`keras_specdec.pairs.benchmark_prompts("code")`, first ``--prompt-tokens``
tokens), stop tokens off, with `SpeculativeSampler(draft=...)` for the head
(`pairs.load("code", draft="head")`) and for the 2-layer draft model, at
T = 1 (random sampling, fixed seed) and T = 0 (greedy), and prints the
sampler's counters summed over the prompts: the acceptance rate and emitted
tokens per target call. Counts only, no timing (this machine's CPU
is shared). ``--head`` reads another head preset directory.
"""

import argparse
import json
import os

os.environ.setdefault("KERAS_BACKEND", "jax")

import numpy as np  # noqa: E402


def main():
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--gamma", type=int, default=4, help="Proposals per round.")
    p.add_argument(
        "--new-tokens", type=int, default=128, help="Tokens generated per prompt."
    )
    p.add_argument(
        "--prompt-tokens",
        type=int,
        default=64,
        help="Prompts are cut to their first this many tokens.",
    )
    p.add_argument(
        "--num-prompts", type=int, default=None, help="Use only the first N prompts."
    )
    p.add_argument(
        "--head",
        default=None,
        help="A DraftHead preset directory (default: the shipped code head).",
    )
    p.add_argument(
        "--temperatures",
        type=float,
        nargs="*",
        default=[1.0, 0.0],
        help="Sampling temperatures to run (0 means greedy).",
    )
    p.add_argument("--out", default=None, help="Write the results as JSON here.")
    args = p.parse_args()

    import keras
    import keras_hub

    import keras_specdec
    from keras_specdec import heads, pairs

    target, draft = pairs.load("code")
    head = (
        heads.DraftHead.from_preset(args.head)
        if args.head
        else pairs.load("code", draft="head")[1]
    )
    prompts = pairs.benchmark_prompts("code")[: args.num_prompts]
    x = target.preprocessor.generate_preprocess(
        prompts, sequence_length=args.prompt_tokens
    )
    max_length = args.prompt_tokens + args.new_tokens
    ids = np.zeros((len(prompts), max_length), "int32")
    mask = np.zeros((len(prompts), max_length), bool)
    ids[:, : args.prompt_tokens] = np.asarray(x["token_ids"])
    mask[:, : args.prompt_tokens] = np.asarray(x["padding_mask"])
    target.preprocessor = None  # generate() on token ids
    results = {}
    for temperature in args.temperatures:
        for name, model in (("head", head), ("draft_model", draft)):
            base = (
                "greedy"
                if temperature == 0
                else keras_hub.samplers.RandomSampler(temperature=temperature)
            )
            sampler = keras_specdec.SpeculativeSampler(
                draft=model, num_speculative_tokens=args.gamma, base_sampler=base
            )
            target.compile(sampler=sampler)
            sampler.reset_stats()
            for row in range(len(prompts)):
                keras.utils.set_random_seed(row)
                target.generate(
                    {
                        "token_ids": ids[row : row + 1],
                        "padding_mask": mask[row : row + 1],
                    },
                    stop_token_ids=None,
                )
            totals = sampler.stats()  # summed over the prompts
            results[f"{name} T={temperature:g}"] = totals
            print(name, f"T={temperature:g}", json.dumps(totals), flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"args": vars(args), "results": results}, f, indent=1)


if __name__ == "__main__":
    main()
