"""The benchmark of `keras_specdec.benchmark` on token ids, without TF text.

GPU machines used for training here have JAX + Keras but no TensorFlow, so
the shipped presets' tokenizers cannot run there. This script builds the code
pair from its presets' backbones (no preprocessor), optionally loads freshly
trained weights, and times generate() on prompts tokenized beforehand:

    # here (tokenizer available): write the prompt ids
    python scripts/token_benchmark.py --write-prompts carry/prompts.json
    # anywhere (no TF needed):
    python scripts/token_benchmark.py --prompts carry/prompts.json \\
        --target-weights ckpt/code_target/final.weights.h5 \\
        --draft-weights ckpt/code_draft/final.weights.h5 --out bench_gpu

Rows have the same fields as `python -m keras_specdec.benchmark`.
"""

import argparse
import json
import os
import time

os.environ.setdefault("KERAS_BACKEND", "jax")

import numpy as np  # noqa: E402


def write_prompts(path, max_length):
    """Token ids of the code pair's held-out prompts
    (`keras_specdec.pairs.benchmark_prompts("code")`, as the benchmark uses)."""
    import keras_specdec

    target, _ = keras_specdec.pairs.load("code")
    prompts = keras_specdec.pairs.benchmark_prompts("code")
    # As generate() on the strings feeds them: start token included.
    x = target.preprocessor.generate_preprocess(prompts, sequence_length=max_length)
    ids = [
        [int(t) for t, m in zip(row, mask) if m]
        for row, mask in zip(np.asarray(x["token_ids"]), np.asarray(x["padding_mask"]))
    ]
    with open(path, "w") as f:
        json.dump({"prompts": prompts, "token_ids": ids}, f)
    print(f"wrote {len(ids)} prompts ({[len(i) for i in ids]} tokens) to {path}")


def load_model(role, weights):
    import keras_hub

    import keras_specdec

    backbone = keras_hub.models.GPT2Backbone.from_preset(
        keras_specdec.pairs.path("code", role)
    )
    model = keras_hub.models.GPT2CausalLM(backbone=backbone, preprocessor=None)
    if weights:  # backbone weights (best.weights.h5 of the training scripts)
        backbone.load_weights(weights)
    return model


def prompt_inputs(batch_token_ids, max_length):
    """A right-padded batch of token-id prompts (ragged rows)."""
    x = np.zeros((len(batch_token_ids), max_length), "int32")
    mask = np.zeros((len(batch_token_ids), max_length), bool)
    for row, token_ids in enumerate(batch_token_ids):
        x[row, : len(token_ids)] = token_ids
        mask[row, : len(token_ids)] = True
    return {"token_ids": x, "padding_mask": mask}


def full_inputs(token_prompts, batch_size, max_length):
    """A batch whose prompts fill all max_length positions: generate() on it
    runs prefill and dispatch but no decoding step (the per-call cost)."""
    ids = [t for prompt in token_prompts for t in prompt]
    while len(ids) < max_length:
        ids = ids + ids
    return prompt_inputs([ids[:max_length]] * batch_size, max_length)


def median_seconds(model, batch, repetitions):
    times = []
    for _ in range(repetitions):
        start = time.perf_counter()
        np.asarray(model.generate(batch, stop_token_ids=None)["token_ids"])
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def time_generate(model, batches, repetitions):
    """(first call seconds, [seconds of each timed call])."""
    start = time.perf_counter()
    out = model.generate(batches[0], stop_token_ids=None)
    np.asarray(out["token_ids"])
    first = time.perf_counter() - start
    times = []
    for _ in range(repetitions):
        for batch in batches:
            start = time.perf_counter()
            out = model.generate(batch, stop_token_ids=None)
            np.asarray(out["token_ids"])
            times.append(time.perf_counter() - start)
    return first, times


def write_results(args, device, rows):
    from keras_specdec.benchmark import to_markdown

    if args.out:
        os.makedirs(args.out, exist_ok=True)
        command = "python scripts/token_benchmark.py " + " ".join(
            f"--{k.replace('_', '-')} "
            + (" ".join(map(str, v)) if isinstance(v, list) else str(v))
            for k, v in vars(args).items()
            if v
        )
        with open(os.path.join(args.out, "results.json"), "w") as f:
            json.dump({"device": device, "rows": rows}, f, indent=1)
        with open(os.path.join(args.out, "results.md"), "w") as f:
            f.write(to_markdown(rows, command))


def main():
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "--write-prompts",
        default=None,
        help="Tokenize the code prompts into this JSON file and exit (needs "
        "the shipped tokenizer, i.e. TensorFlow).",
    )
    p.add_argument(
        "--prompts",
        default=None,
        help="A JSON file of token-id prompts written by --write-prompts.",
    )
    p.add_argument(
        "--target-weights",
        default=None,
        help="Backbone weights to load into the target (best.weights.h5 of "
        "scripts/train_causal.py); None keeps the shipped weights.",
    )
    p.add_argument(
        "--draft-weights",
        default=None,
        help="Backbone weights to load into the draft; None keeps the shipped weights.",
    )
    p.add_argument(
        "--gammas",
        type=int,
        nargs="+",
        default=[1, 2, 3, 4, 6, 8],
        help="The numbers of draft tokens per target call to time.",
    )
    p.add_argument(
        "--temperatures",
        type=float,
        nargs="+",
        default=[0, 1],
        help="Sampling temperatures to time (0 is greedy).",
    )
    p.add_argument(
        "--max-length",
        type=int,
        default=128,
        help="The generation length in tokens, prompt included.",
    )
    p.add_argument(
        "--repetitions",
        type=int,
        default=3,
        help="Timed passes over all prompts; the median is reported.",
    )
    p.add_argument(
        "--batch-sizes",
        type=int,
        nargs="+",
        default=[1],
        help="Batch sizes to time; a batch cycles through the prompts.",
    )
    p.add_argument(
        "--schedules",
        nargs="*",
        default=[],
        choices=["auto", "heuristic"],
        help="Adaptive gamma schedules to time besides the fixed gammas.",
    )
    p.add_argument(
        "--prompt-tokens",
        type=int,
        default=64,
        help="Prompts are cut to their first this many tokens.",
    )
    p.add_argument(
        "--out",
        default=None,
        help="Write results.json and results.md to this directory; None prints only.",
    )
    args = p.parse_args()
    if args.write_prompts:
        write_prompts(args.write_prompts, args.max_length)
        return

    import jax

    import keras_specdec
    from keras_specdec import analysis
    from keras_specdec.benchmark import (
        base_sampler_for,
        print_row,
        prompt_batches,
        result_row,
    )

    with open(args.prompts) as f:
        token_prompts = [t[: args.prompt_tokens] for t in json.load(f)["token_ids"]]
    target = load_model("target", args.target_weights)
    draft = load_model("draft", args.draft_weights)
    device = str(jax.devices()[0].device_kind)
    chunks = sorted({1, *(g + 1 for g in args.gammas)})
    rows = []
    for batch_size in args.batch_sizes:
        kwargs = dict(batch_size=batch_size, max_length=args.max_length)
        target_seconds = analysis.measure_step_seconds(
            target, chunks, repetitions=50, **kwargs
        )
        draft_seconds = analysis.measure_step_seconds(
            draft, (1, 2), repetitions=50, **kwargs
        )
        print(
            f"device {device}, batch {batch_size}: target step {target_seconds}, "
            f"draft {draft_seconds}",
            flush=True,
        )
        batches = [
            prompt_inputs(b, args.max_length)
            for b in prompt_batches(token_prompts, batch_size)
        ]
        steps = float(
            np.mean([args.max_length - b["padding_mask"].sum(1).min() for b in batches])
        )
        full = full_inputs(token_prompts, batch_size, args.max_length)
        c = draft_seconds[1] / target_seconds[1]
        verify_costs = {
            g: target_seconds[g + 1] / target_seconds[1] for g in args.gammas
        }
        for temperature in args.temperatures:
            target.compile(sampler=base_sampler_for(temperature))
            base_first, base_times = time_generate(target, batches, args.repetitions)
            base = {
                "median": float(np.median(base_times)),
                "mean": float(np.mean(base_times)),
                "first_call": base_first,
                "fixed": median_seconds(target, full, 3 * args.repetitions),
                "steps": steps,
            }
            for gamma in args.gammas + args.schedules:
                sampler = keras_specdec.SpeculativeSampler(
                    draft,
                    "auto" if gamma in ("auto", "heuristic") else gamma,
                    base_sampler=base_sampler_for(temperature),
                    seed=0,
                    max_speculative_tokens=max(args.gammas),
                    gamma_schedule="heuristic" if gamma == "heuristic" else "theorem",
                    cost_coefficient=c,
                    verify_costs=verify_costs,
                )
                target.compile(sampler=sampler)
                spec_first, _ = time_generate(target, batches[:1], 0)
                sampler.reset_stats()
                _, spec_times = time_generate(target, batches, args.repetitions)
                stats = sampler.stats()
                fixed = median_seconds(target, full, 3 * args.repetitions)
                row = result_row(
                    pair=f"code ({device})",
                    batch_size=batch_size,
                    max_length=args.max_length,
                    draft="code/draft",
                    temperature=temperature,
                    gamma=gamma,
                    gammas=args.gammas,
                    stats=stats,
                    model_draft=True,
                    target_seconds=target_seconds,
                    draft_seconds=draft_seconds,
                    base=base,
                    speculative={
                        "median": float(np.median(spec_times)),
                        "mean": float(np.mean(spec_times)),
                        "first_call": spec_first,
                        "fixed": fixed,
                        "rounds": stats["target_calls"] / len(spec_times),
                    },
                )
                first = next(
                    (
                        r
                        for r in rows
                        if (r["temperature"], r["gamma"]) == (temperature, gamma)
                    ),
                    row,
                )
                row["tokens_per_target_call_vs_first_batch"] = (
                    row["tokens_per_target_call"] / first["tokens_per_target_call"]
                )
                rows.append(row)
                print_row(row)
        write_results(args, device, rows)  # partial results survive a timeout
    write_results(args, device, rows)


if __name__ == "__main__":
    main()
