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

os.environ.setdefault("KERAS_BACKEND", "jax")

import numpy as np  # noqa: E402


def write_prompts(path, max_length):
    import keras_specdec
    from keras_specdec.benchmark import CODE_PROMPTS

    target, _ = keras_specdec.pairs.load("code")
    ids = [
        [int(t) for t in np.asarray(target.preprocessor.tokenizer(p))]
        for p in CODE_PROMPTS
    ]
    with open(path, "w") as f:
        json.dump({"prompts": CODE_PROMPTS, "token_ids": ids}, f)
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


def prompt_inputs(token_ids, max_length):
    x = np.zeros((1, max_length), "int32")
    x[0, : len(token_ids)] = token_ids
    mask = np.zeros((1, max_length), bool)
    mask[0, : len(token_ids)] = True
    return {"token_ids": x, "padding_mask": mask}


def time_generate(model, prompts, repetitions):
    """(first call seconds, median seconds per call over `repetitions` passes
    over every prompt)."""
    from keras_specdec import analysis

    def call(prompt):
        return lambda: model.generate(prompt, stop_token_ids=None)

    _, first = analysis.timed_call(call(prompts[0]))
    if not repetitions:
        return first, None
    # One median per prompt would weigh prompts unequally; time passes over
    # all prompts instead, one call each, and divide.
    per_pass = analysis.median_seconds(
        lambda: [call(p)() for p in prompts], repetitions, warmup=0
    )
    return first, per_pass / len(prompts)


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
        "--out",
        default=None,
        help="Write results.json and results.md to this directory; None prints only.",
    )
    args = p.parse_args()
    if args.write_prompts:
        write_prompts(args.write_prompts, args.max_length)
        return
    if not args.prompts:
        p.error("give --prompts FILE (written by --write-prompts).")

    import jax

    import keras_specdec
    from keras_specdec import analysis
    from keras_specdec.benchmark import (
        base_sampler_for,
        print_row,
        result_row,
        to_markdown,
    )

    with open(args.prompts) as f:
        token_prompts = json.load(f)["token_ids"]
    prompts = [prompt_inputs(t, args.max_length) for t in token_prompts]
    target = load_model("target", args.target_weights)
    draft = load_model("draft", args.draft_weights)
    device = str(jax.devices()[0].device_kind)
    chunks = sorted({1, *(g + 1 for g in args.gammas)})
    target_seconds = analysis.measure_step_seconds(
        target, chunks, max_length=args.max_length, repetitions=50
    )
    draft_seconds = analysis.measure_step_seconds(
        draft, (1,), max_length=args.max_length, repetitions=50
    )
    cost = draft_seconds[1] / target_seconds[1]
    print(f"device {device}: target step {target_seconds}, draft {draft_seconds}")
    rows = []
    for temperature in args.temperatures:
        target.compile(sampler=base_sampler_for(temperature))
        base_compile, base_time = time_generate(target, prompts, args.repetitions)
        for gamma in args.gammas:
            sampler = keras_specdec.SpeculativeSampler(
                draft, gamma, base_sampler=base_sampler_for(temperature), seed=0
            )
            target.compile(sampler=sampler)
            spec_compile, _ = time_generate(target, prompts[:1], 0)
            sampler.reset_stats()
            _, spec_time = time_generate(target, prompts, args.repetitions)
            row = result_row(
                task=f"code (batch 1, max_length {args.max_length}, {device})",
                draft="code/draft",
                temperature=temperature,
                gamma=gamma,
                stats=sampler.stats(),
                c=cost,
                best_gamma=gamma,
                verify_cost=target_seconds[gamma + 1] / target_seconds[1],
                base=(base_compile, base_time),
                speculative=(spec_compile, spec_time),
            )
            rows.append(row)
            print_row(row)
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        command = "python scripts/token_benchmark.py " + " ".join(
            f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if v
        )
        with open(os.path.join(args.out, "results.json"), "w") as f:
            json.dump({"device": device, "rows": rows}, f, indent=1)
        with open(os.path.join(args.out, "results.md"), "w") as f:
            f.write(to_markdown(rows, command))


if __name__ == "__main__":
    main()
