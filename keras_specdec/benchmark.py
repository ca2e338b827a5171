"""Benchmark speculative decoding the way the paper's Table 2 does.

    python -m keras_specdec.benchmark --pair code --gammas 1 2 3 4 5 6 7 \\
        --temperatures 0 1 --out benchmarks/code

For each temperature (0 = greedy) it times, in one run on this machine and
after warm-up (compilation reported separately), `generate()` of the target
alone with the base sampler and with `SpeculativeSampler` for each gamma,
batch 1, fixed work per call (no early stop), median of `--repetitions`.
Each row reports: measured alpha, measured c (draft step / target step),
Theorem 3.8's predicted improvement, the measured improvement and their ratio
(implementation efficiency). Writes `results.json`, `results.md` and PNG plots
of speedup and alpha against gamma, measured points over the theorem's curve.
"""

import argparse
import json
import os
import time

os.environ.setdefault("KERAS_BACKEND", "jax")

# Held-out style prompts for the code pair (function and class openings).
CODE_PROMPTS = [
    "def binary_search(items, value):\n    ",
    "class LRUCache:\n    def __init__(self, capacity):\n        ",
    "import os\n\n\ndef read_lines(path):\n    ",
    "def parse_args(argv=None):\n    parser = argparse.ArgumentParser(",
]


def base_sampler_for(temperature, seed=0):
    import keras_hub

    if temperature == 0:
        return keras_hub.samplers.GreedySampler()
    return keras_hub.samplers.RandomSampler(temperature=temperature, seed=seed)


def time_generate(model, prompts, max_length, repetitions):
    """(first call seconds incl. compile, median seconds per prompt)."""
    import numpy as np

    start = time.perf_counter()
    model.generate(prompts[0], max_length=max_length, stop_token_ids=None)
    first = time.perf_counter() - start
    times = []
    for _ in range(repetitions):
        for prompt in prompts:
            start = time.perf_counter()
            model.generate(prompt, max_length=max_length, stop_token_ids=None)
            times.append(time.perf_counter() - start)
    return first, float(np.median(times))


def run(args):
    import keras_specdec
    from keras_specdec import analysis

    target, draft = keras_specdec.pairs.load(args.pair)
    prompts = CODE_PROMPTS[: args.num_prompts]
    chunks = sorted({1, *(g + 1 for g in args.gammas)})
    target_seconds = analysis.measure_step_seconds(
        target, chunks, max_length=args.max_length, repetitions=50
    )
    draft_seconds = analysis.measure_step_seconds(
        draft, (1,), max_length=args.max_length, repetitions=50
    )
    cost = draft_seconds[1] / target_seconds[1]
    rows = []
    for temperature in args.temperatures:
        target.compile(sampler=base_sampler_for(temperature))
        base_compile, base_time = time_generate(
            target, prompts, args.max_length, args.repetitions
        )
        for gamma in args.gammas:
            sampler = keras_specdec.SpeculativeSampler(
                draft,
                gamma,
                base_sampler=base_sampler_for(temperature),
                seed=args.seed,
            )
            target.compile(sampler=sampler)
            spec_compile, _ = time_generate(target, prompts[:1], args.max_length, 0)
            sampler.reset_stats()
            _, spec_time = time_generate(
                target, prompts, args.max_length, args.repetitions
            )
            stats = sampler.stats()
            alpha = stats["acceptance_rate"]
            predicted = analysis.expected_speedup(alpha, gamma, cost)
            verify_cost = target_seconds[gamma + 1] / target_seconds[1]
            predicted_v = analysis.expected_speedup_with_verify_cost(
                alpha, gamma, cost, verify_cost
            )
            measured = base_time / spec_time
            row = {
                "task": f"{args.pair} (batch 1, max_length {args.max_length})",
                "draft": f"{args.pair}/draft",
                "temperature": temperature,
                "gamma": gamma,
                "alpha": alpha,
                "c": cost,
                "tokens_per_target_call": stats["tokens_per_target_call"],
                "predicted_speedup": predicted,
                "measured_speedup": measured,
                "efficiency": measured / predicted,
                "verify_cost": verify_cost,
                "predicted_with_verify_cost": predicted_v,
                "efficiency_with_verify_cost": measured / predicted_v,
                "baseline_ms": base_time * 1000,
                "speculative_ms": spec_time * 1000,
                "baseline_compile_s": base_compile,
                "speculative_compile_s": spec_compile,
            }
            rows.append(row)
            print(
                f"T={temperature} gamma={gamma} alpha={alpha:.3f} c={cost:.3f} "
                f"predicted={predicted:.2f}x measured={measured:.2f}x "
                f"efficiency={measured / predicted:.2f} v={verify_cost:.2f} "
                f"predicted_v={predicted_v:.2f}x",
                flush=True,
            )
    return rows


def to_markdown(rows, command):
    lines = [
        f"Measured with `{command}`.",
        "",
        "| task | draft | T | gamma | alpha | c | tokens/call | Thm 3.8 predicted "
        "| measured | efficiency | v | predicted with v | efficiency with v |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['task']} | {r['draft']} | {r['temperature']} | {r['gamma']} | "
            f"{r['alpha']:.3f} | {r['c']:.3f} | {r['tokens_per_target_call']:.2f} | "
            f"{r['predicted_speedup']:.2f}x | {r['measured_speedup']:.2f}x | "
            f"{r['efficiency']:.2f} | {r['verify_cost']:.2f} | "
            f"{r['predicted_with_verify_cost']:.2f}x | "
            f"{r['efficiency_with_verify_cost']:.2f} |"
        )
    lines += [
        "",
        "v = time(gamma + 1 token verification pass) / time(one target step), "
        "measured; Theorem 3.8 assumes v = 1 (free parallel scoring, as on "
        "TPUs); 'predicted with v' divides by gamma c + v instead of gamma c + 1.",
        "",
        "Table 3 analogue (alpha by draft kind):",
        "",
        "| draft | T=0 | T=1 |",
        "|---|---|---|",
    ]
    by_t = {}
    for r in rows:
        by_t.setdefault(r["temperature"], []).append(r["alpha"])
    mean = {t: sum(v) / len(v) for t, v in by_t.items()}
    lines.append(
        f"| model ({rows[0]['draft']}) | "
        f"{mean.get(0, float('nan')):.3f} | {mean.get(1, float('nan')):.3f} |"
    )
    lines.append("| unigram | not yet implemented | not yet implemented |")
    lines.append("| bigram | not yet implemented | not yet implemented |")
    return "\n".join(lines) + "\n"


def plot(rows, out_dir):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from keras_specdec import analysis

    for key, label, name in (
        ("measured_speedup", "walltime improvement", "speedup_vs_gamma.png"),
        ("alpha", "acceptance rate alpha", "alpha_vs_gamma.png"),
    ):
        fig, ax = plt.subplots(figsize=(6, 4))
        for temperature in sorted({r["temperature"] for r in rows}):
            sel = [r for r in rows if r["temperature"] == temperature]
            gammas = [r["gamma"] for r in sel]
            ax.plot(
                gammas, [r[key] for r in sel], "o", label=f"measured, T={temperature}"
            )
            if key == "measured_speedup":
                alpha = float(np.mean([r["alpha"] for r in sel]))
                grid = np.arange(1, max(gammas) + 1)
                ax.plot(
                    grid,
                    [analysis.expected_speedup(alpha, g, sel[0]["c"]) for g in grid],
                    "-",
                    label=f"Theorem 3.8, alpha={alpha:.2f}, c={sel[0]['c']:.3f}",
                )
        ax.set_xlabel("gamma (num_speculative_tokens)")
        ax.set_ylabel(label)
        ax.legend()
        fig.tight_layout()
        fig.savefig(os.path.join(out_dir, name), dpi=100)
        plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pair", default="code")
    parser.add_argument("--gammas", type=int, nargs="+", default=[1, 2, 3, 4, 5, 6])
    parser.add_argument("--temperatures", type=float, nargs="+", default=[0, 1])
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--num-prompts", type=int, default=4)
    parser.add_argument("--repetitions", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="benchmarks/code")
    args = parser.parse_args(argv)
    args.temperatures = [int(t) if t == int(t) else t for t in args.temperatures]

    os.makedirs(args.out, exist_ok=True)
    rows = run(args)
    command = "python -m keras_specdec.benchmark " + " ".join(
        argv if argv is not None else __import__("sys").argv[1:]
    )
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump({"command": command, "rows": rows}, f, indent=1)
    markdown = to_markdown(rows, command.strip())
    with open(os.path.join(args.out, "results.md"), "w") as f:
        f.write(markdown)
    plot(rows, args.out)
    print(markdown)
    return rows


if __name__ == "__main__":
    main()
