"""Adaptive gamma vs a fixed gamma on the shipped code pair, one process.

    python scripts/auto_gamma_probe.py [--fixed 6] [--max-length 128]

Times greedy generate (median of 3 passes over the code prompts, compile
excluded, stop tokens off) with the
target alone, a fixed gamma, `"auto"` (Theorem 3.8 with c and verify costs
measured here), `"auto"` without verify costs, and the heuristic schedule;
prints the speedups and the mean gamma per round each chose.
"""

import argparse
import os

os.environ.setdefault("KERAS_BACKEND", "jax")

import keras_specdec  # noqa: E402
from keras_specdec import analysis  # noqa: E402
from keras_specdec.benchmark import CODE_PROMPTS  # noqa: E402


def main():
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "--fixed", type=int, default=6, help="The fixed gamma to compare with."
    )
    p.add_argument(
        "--max-length",
        type=int,
        default=128,
        help="The generation length in tokens, prompt included.",
    )
    args = p.parse_args()
    target, draft = keras_specdec.pairs.load("code")
    c = analysis.measure_cost_coefficient(target, draft, max_length=args.max_length)
    verify_costs = analysis.measure_verify_costs(
        target, [1, 2, 3, 4, 6, 8], max_length=args.max_length
    )
    print(f"c = {c:.3f}, verify costs {verify_costs}")

    def median_seconds(sampler):
        """Median seconds of one greedy pass over the code prompts (3 passes
        after a compiling call), with `sampler` compiled in."""
        target.compile(sampler=sampler)
        target.generate(
            CODE_PROMPTS[0], max_length=args.max_length, stop_token_ids=None
        )
        if hasattr(sampler, "reset_stats"):
            sampler.reset_stats()

        def one_pass():
            for prompt in CODE_PROMPTS:
                target.generate(prompt, max_length=args.max_length, stop_token_ids=None)

        return analysis.median_seconds(one_pass, 3, warmup=0)

    base = median_seconds("greedy")
    S = keras_specdec.SpeculativeSampler
    for name, sampler in [
        (f"fixed gamma {args.fixed}", S(draft, args.fixed)),
        (
            "auto (c, v)",
            S(draft, "auto", cost_coefficient=c, verify_costs=verify_costs),
        ),
        ("auto (c only)", S(draft, "auto", cost_coefficient=c)),
        ("heuristic", S(draft, "auto", gamma_schedule="heuristic")),
    ]:
        seconds = median_seconds(sampler)
        stats = sampler.stats()
        print(
            f"{name:18s} {base / seconds:.2f}x  gamma/round "
            f"{stats['proposed_tokens'] / stats['row_target_calls']:.2f}  "
            f"alpha {stats['acceptance_rate']:.3f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
