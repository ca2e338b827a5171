"""Batches on the shipped code pair: tokens per row per target call, alpha and
walltime speedup against the target alone, per batch size and temperature.

Batch b holds the first b held-out prompts (`pairs.benchmark_prompts("code")`,
cycled when b is larger than their number), each cut to its first
`--prompt-tokens` tokens, right-padded to `--max-length`; no stop token, so
every row generates to `--max-length`. Plain and speculative `generate()` run
on their own target instances, each compiled once, then timed in turn within
each repetition (interleaved); the medians are compared. This is a probe, not
a test: on a shared machine the absolute times are noisy, compare ratios
taken in one run.

`--vmap-cost` also times the target's verify pass (a `--gamma + 1` token
window, 16 calls inside a jitted `fori_loop`) with one shared scalar cache
index against `model_utils.decode_rows` (one index per row, `jax.vmap`).

Example:

    KERAS_BACKEND=jax python scripts/batch_probe.py --batch-sizes 1 4 16 \\
        --temperatures 0 1 --repetitions 3 --vmap-cost
"""

import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "jax")
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--batch-sizes", type=int, nargs="+", default=[1, 4, 16], help="Batch sizes."
    )
    parser.add_argument(
        "--temperatures",
        type=float,
        nargs="+",
        default=[0.0, 1.0],
        help="Sampling temperatures: 0 is greedy, otherwise a RandomSampler.",
    )
    parser.add_argument("--gamma", type=int, default=4, help="Draft tokens a round.")
    parser.add_argument("--max-length", type=int, default=128, help="Buffer length.")
    parser.add_argument(
        "--prompt-tokens", type=int, default=64, help="Tokens kept of each prompt."
    )
    parser.add_argument(
        "--repetitions", type=int, default=3, help="Timed calls per configuration."
    )
    parser.add_argument("--seed", type=int, default=0, help="Sampler seed.")
    parser.add_argument(
        "--vmap-cost",
        action="store_true",
        help="Also time a verify pass with per-row vs shared cache index.",
    )
    return parser.parse_args(argv)


def batch_inputs(tokenizer, prompts, batch_size, prompt_tokens, max_length):
    import numpy as np

    token_ids = np.zeros((batch_size, max_length), "int32")
    padding_mask = np.zeros((batch_size, max_length), bool)
    for row in range(batch_size):
        ids = np.asarray(tokenizer(prompts[row % len(prompts)]))[:prompt_tokens]
        token_ids[row, : len(ids)] = ids
        padding_mask[row, : len(ids)] = True
    return {"token_ids": token_ids, "padding_mask": padding_mask}


def vmap_cost(target, batch_size, window, max_length, repetitions=10, calls=16):
    """Seconds per verify call: (shared scalar index, per-row index)."""
    import jax
    import keras
    import numpy as np
    from keras import ops

    from keras_specdec import model_utils

    token_ids = np.ones((batch_size, max_length), "int32")
    padding_mask = np.ones((batch_size, max_length), bool)
    state = model_utils.init_state(target, token_ids, padding_mask)
    axes = model_utils.state_batch_axes(target, state, token_ids, padding_mask)
    variables = [v.value for v in target.weights]
    chunk = ops.ones((batch_size, window), "int32")
    rows = np.arange(batch_size, dtype="int32") % 8 + max_length // 2 - 4

    def program(per_row):
        @jax.jit
        def run(variables, state, index):
            with keras.StatelessScope(state_mapping=zip(target.weights, variables)):

                def one(i, carry):
                    state, total = carry
                    if per_row:
                        logits, state = model_utils.decode_rows(
                            target, state, chunk, index, axes
                        )
                    else:
                        logits, state = model_utils.decode(
                            target, state, chunk, index[0]
                        )
                    return state, total + ops.sum(logits[:, -1, :1])

                return jax.lax.fori_loop(0, calls, one, (state, 0.0))

        return run

    programs = {False: program(False), True: program(True)}
    index = ops.convert_to_tensor(rows)
    for run in programs.values():
        jax.block_until_ready(run(variables, state, index))
    times = {False: [], True: []}
    for _ in range(repetitions):
        for per_row, run in programs.items():
            start = time.perf_counter()
            jax.block_until_ready(run(variables, state, index))
            times[per_row].append((time.perf_counter() - start) / calls)
    return statistics.median(times[False]), statistics.median(times[True])


def main(argv=None):
    args = parse_args(argv)
    import keras_specdec
    from keras_specdec.benchmark import base_sampler_for

    target, draft = keras_specdec.pairs.load("code")
    tokenizer = target.preprocessor.tokenizer
    prompts = keras_specdec.pairs.benchmark_prompts("code")
    print(
        f"code pair, gamma {args.gamma}, max_length {args.max_length}, first "
        f"{args.prompt_tokens} prompt tokens, {args.repetitions} repetitions"
    )
    rows = []
    for batch_size in args.batch_sizes:
        inputs = batch_inputs(
            tokenizer, prompts, batch_size, args.prompt_tokens, args.max_length
        )
        if args.vmap_cost:
            shared, per_row = vmap_cost(
                target, batch_size, args.gamma + 1, args.max_length
            )
            print(
                f"batch {batch_size}: verify pass {1e3 * shared:.2f} ms shared "
                f"index, {1e3 * per_row:.2f} ms per-row index "
                f"({per_row / shared:.2f}x)",
                flush=True,
            )
        for temperature in args.temperatures:
            samplers = [
                base_sampler_for(temperature, args.seed),
                keras_specdec.SpeculativeSampler(
                    draft,
                    args.gamma,
                    base_sampler=base_sampler_for(temperature, args.seed),
                    seed=args.seed,
                ),
            ]
            models = []
            for sampler in samplers:
                model = keras_specdec.pairs.load("code")[0]
                model.preprocessor = None
                model.compile(sampler=sampler)
                model.generate(inputs, stop_token_ids=None)  # compile
                models.append(model)
            samplers[1].reset_stats()
            times = [[], []]
            for repetition in range(args.repetitions):
                for k in range(2):
                    i = (k + repetition) % 2
                    start = time.perf_counter()
                    models[i].generate(inputs, stop_token_ids=None)
                    times[i].append(time.perf_counter() - start)
            stats = samplers[1].stats()
            plain, speculative = (statistics.median(t) for t in times)
            row = dict(
                batch=batch_size,
                temperature=temperature,
                tokens_per_row_call=stats["tokens_per_target_call"],
                tokens_per_call_all_rows=stats["emitted_tokens"]
                / (stats["target_calls"] * batch_size),
                alpha=stats["acceptance_rate"],
                plain_s=plain,
                speculative_s=speculative,
                speedup=plain / speculative,
            )
            rows.append(row)
            print(
                f"T={temperature:g} batch {batch_size:3d}: tokens/row-call "
                f"{row['tokens_per_row_call']:.2f} (over all rows "
                f"{row['tokens_per_call_all_rows']:.2f}), alpha {row['alpha']:.2f}, "
                f"plain {plain:.2f} s, speculative {speculative:.2f} s, "
                f"speedup {row['speedup']:.2f}x",
                flush=True,
            )
            del models
    return rows


if __name__ == "__main__":
    main()
