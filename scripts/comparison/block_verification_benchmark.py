"""Block vs token verification on the shipped code pair: tokens per target
call (per row, from `sampler.stats()`) and walltime, interleaved.

The 9 held-out prompts (`pairs.benchmark_prompts("code")`), each cut to its
first `--prompt-tokens` tokens (`bench.run.truncate_prompts`), batched as
`python -m keras_specdec.bench` batches them (`bench.run.prompt_batches`:
batch 1 is 9 calls, batch 16 is one call cycling the 9 prompts); no stop
token, so every row generates to `--max-length`. Three target instances,
each compiled once: plain `generate()`, `SpeculativeSampler(verification=
"token")`, `SpeculativeSampler(verification="block")`, same draft, gamma,
base sampler and seed; timed in turn within each repetition
(`bench.run.interleaved_seconds`), medians compared. Counters accumulate over
every timed call (each repetition draws fresh random numbers), so more
repetitions also narrow the tokens-per-call estimate; its standard error is
estimated from the per-repetition values.

Example:

    KERAS_BACKEND=jax python scripts/comparison/block_verification_benchmark.py \\
        --batch-sizes 1 16 --temperature 1 --gamma 4 --repetitions 8
"""

import argparse
import os
import statistics
import sys

os.environ.setdefault("KERAS_BACKEND", "jax")
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--batch-sizes", type=int, nargs="+", default=[1, 16], help="Batch sizes."
    )
    parser.add_argument(
        "--temperature", type=float, default=1.0, help="RandomSampler temperature."
    )
    parser.add_argument("--gamma", type=int, default=4, help="Draft tokens a round.")
    parser.add_argument("--max-length", type=int, default=128, help="Buffer length.")
    parser.add_argument(
        "--prompt-tokens", type=int, default=64, help="Tokens kept of each prompt."
    )
    parser.add_argument(
        "--repetitions", type=int, default=8, help="Timed passes over the prompts."
    )
    parser.add_argument("--seed", type=int, default=0, help="Sampler seed.")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    import numpy as np

    import keras_specdec
    from keras_specdec.bench import run as benchmark

    prompts = keras_specdec.pairs.benchmark_prompts("code")
    names = ["plain", "token", "block"]
    print(
        f"code pair, T={args.temperature:g}, gamma {args.gamma}, max_length "
        f"{args.max_length}, {len(prompts)} prompts cut to {args.prompt_tokens} "
        f"tokens, {args.repetitions} repetitions",
        flush=True,
    )
    rows = []
    for batch_size in args.batch_sizes:
        models, samplers = [], []
        for name in names:
            model = keras_specdec.pairs.load("code")[0]
            base = benchmark.base_sampler_for(args.temperature, args.seed)
            if name == "plain":
                sampler = base
            else:
                draft = keras_specdec.pairs.load("code")[1]
                sampler = keras_specdec.SpeculativeSampler(
                    draft,
                    args.gamma,
                    base_sampler=base,
                    seed=args.seed,
                    verification=name,
                )
            model.compile(sampler=sampler)
            models.append(model)
            samplers.append(sampler)
        cut = benchmark.truncate_prompts(models[0], prompts, args.prompt_tokens)
        batches = benchmark.prompt_batches(cut, batch_size)
        for model in models:  # compile
            model.generate(batches[0], max_length=args.max_length, stop_token_ids=None)
        per_repetition = {name: [] for name in names[1:]}
        times = [[] for _ in models]
        for repetition in range(args.repetitions):
            for i in (1, 2):
                samplers[i].reset_stats()
            t = benchmark.interleaved_seconds(
                models,
                batches,
                args.max_length,
                1,
                label=f"batch {batch_size} rep {repetition + 1}",
            )
            for i in range(len(models)):
                times[i].extend(t[i])
            for i in (1, 2):
                stats = samplers[i].stats()
                per_repetition[names[i]].append(
                    (stats["emitted_tokens"], stats["row_target_calls"], stats)
                )
        medians = [statistics.median(t) for t in times]
        row = {"batch": batch_size, "plain_s": medians[0]}
        for i in (1, 2):
            name = names[i]
            emitted = sum(e for e, _, _ in per_repetition[name])
            calls = sum(c for _, c, _ in per_repetition[name])
            each = np.array([e / c for e, c, _ in per_repetition[name]])
            accepted = sum(s["accepted_tokens"] for _, _, s in per_repetition[name])
            judged = sum(s["draft_tokens"] for _, _, s in per_repetition[name])
            row[name] = {
                "tokens_per_target_call": emitted / calls,
                "standard_error": float(each.std(ddof=1) / np.sqrt(len(each))),
                "accepted_per_judged": accepted / judged,
                "seconds": medians[i],
                "speedup": medians[0] / medians[i],
            }
        rows.append(row)
        print(
            f"batch {batch_size}: plain {row['plain_s']:.3f} s/call (median)",
            flush=True,
        )
        for name in names[1:]:
            r = row[name]
            print(
                f"  {name:5s}: tokens/target call {r['tokens_per_target_call']:.3f}"
                f" +- {r['standard_error']:.3f}, accepted/judged "
                f"{r['accepted_per_judged']:.3f}, {r['seconds']:.3f} s/call, "
                f"speedup {r['speedup']:.2f}x",
                flush=True,
            )
        gain = (
            row["block"]["tokens_per_target_call"]
            / row["token"]["tokens_per_target_call"]
        )
        walltime = row["token"]["seconds"] / row["block"]["seconds"]
        print(
            f"  block / token: tokens per call x{gain:.3f}, walltime x{walltime:.3f}",
            flush=True,
        )
        del models
    return rows


if __name__ == "__main__":
    main()
