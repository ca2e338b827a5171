"""Quickstart: plain vs speculative decoding on the shipped model pair.

python -m keras_specdec.demo            # greedy, gamma 4
python -m keras_specdec.demo --sampler random --temperature 1.0
"""

import argparse
import os

os.environ.setdefault("KERAS_BACKEND", "jax")


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m keras_specdec.demo",
        description="Generate with the shipped target alone and with "
        "speculative decoding; print both texts, alpha and the speedup.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--pair",
        default="code",
        help="The shipped model pair (see keras_specdec.pairs.available()).",
    )
    parser.add_argument(
        "--prompt",
        default=None,
        help="The prompt; None means one of the pair's held-out prompts (for "
        "the code pair, the opening of a function from a file it was never "
        "trained on; --prompt-index picks which).",
    )
    parser.add_argument(
        "--prompt-index",
        type=int,
        default=-1,
        help="Which of keras_specdec.pairs.benchmark_prompts(pair) to use when "
        "--prompt is not given; -1 is the last, whose greedy continuation for "
        "the code pair is code rather than a repetition loop, which some "
        "prompts fall into with these small models.",
    )
    parser.add_argument(
        "--max-length",
        type=int,
        default=128,
        help="The generation length in tokens, prompt included; both runs "
        "fill it (stop tokens off), so they do the same work.",
    )
    parser.add_argument(
        "--gamma",
        type=int,
        default=4,
        help="Draft tokens per target call (num_speculative_tokens).",
    )
    parser.add_argument(
        "--sampler",
        default="greedy",
        choices=["greedy", "random", "top_k", "top_p"],
        help="The KerasHub sampler both runs use (speculative decoding keeps "
        "its output distribution).",
    )
    parser.add_argument(
        "--temperature",
        type=float,
        default=1.0,
        help="The sampling temperature (not used by greedy).",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="The sampling seed (not used by greedy)."
    )
    parser.add_argument(
        "--repetitions",
        type=int,
        default=3,
        help="Timed calls after the compiling one; the median is reported.",
    )
    args = parser.parse_args(argv)
    if args.repetitions < 1:
        parser.error(f"--repetitions must be at least 1, got {args.repetitions}.")

    import warnings

    import keras_hub

    import keras_specdec
    from keras_specdec import analysis

    # Building a T5 pair makes Keras warn that T5's attention layers "destroy
    # the mask"; T5 reads padding masks from its inputs, so nothing is lost.
    warnings.filterwarnings(
        "ignore",
        message=r".*\(of type T5MultiHeadAttention\).*destroy the mask",
        category=UserWarning,
    )

    target, draft = keras_specdec.pairs.load(args.pair)
    if args.prompt is None:
        prompts = keras_specdec.pairs.benchmark_prompts(args.pair)
        args.prompt = prompts[args.prompt_index]
    target_dir = keras_specdec.pairs.path(args.pair, "target")
    if not keras_specdec.pairs.is_seq2seq(target_dir):
        prompt_tokens = len(target.preprocessor.tokenizer(args.prompt))
        if prompt_tokens + 1 >= args.max_length:
            parser.error(
                f"the prompt is {prompt_tokens} tokens, which leaves nothing to "
                f"generate within --max-length {args.max_length}: raise "
                "--max-length or shorten the prompt."
            )

    def base():
        kwargs = (
            {}
            if args.sampler == "greedy"
            else {"temperature": args.temperature, "seed": args.seed}
        )
        return keras_hub.samplers.get({"class_name": args.sampler, "config": kwargs})

    # Fixed work: stop tokens off, so both runs generate the same number of
    # tokens (with sampling they would otherwise stop at different lengths and
    # the walltimes would not compare).
    def generate():
        return target.generate(
            args.prompt, max_length=args.max_length, stop_token_ids=None
        )

    target.compile(sampler=base())
    plain, plain_first = analysis.timed_call(generate)
    plain_time = analysis.median_seconds(generate, args.repetitions, warmup=0)

    sampler = keras_specdec.SpeculativeSampler(
        draft=draft,
        num_speculative_tokens=args.gamma,
        base_sampler=base(),
        seed=args.seed,
    )
    target.compile(sampler=sampler)
    spec, spec_first = analysis.timed_call(generate)
    sampler.reset_stats()
    spec_time = analysis.median_seconds(generate, args.repetitions, warmup=0)
    stats = sampler.stats()

    print("=" * 72)
    print(f"Target alone ({args.sampler}):\n{plain}")
    print("-" * 72)
    print(f"Speculative (draft proposes {args.gamma} tokens per target call):\n{spec}")
    print("=" * 72)
    if args.sampler == "greedy":
        print(f"identical outputs:        {plain == spec}")
    print(f"acceptance rate (alpha):  {stats['acceptance_rate']:.3f}")
    print(f"tokens per target call:   {stats['tokens_per_target_call']:.2f}")
    print(
        f"walltime, target alone:   {plain_time * 1000:.1f} ms "
        f"(first call with compile {plain_first:.1f} s)"
    )
    print(
        f"walltime, speculative:    {spec_time * 1000:.1f} ms "
        f"(first call with compile {spec_first:.1f} s)"
    )
    print(
        f"measured speedup:         {plain_time / spec_time:.2f}x "
        f"(median of {args.repetitions}, same machine, same run)"
    )
    print(
        "timed work:               fixed; both fill --max-length "
        f"{args.max_length} with stop tokens off (stop_token_ids=None), so "
        "each call generates the same number of tokens"
    )
    return plain, spec, stats


if __name__ == "__main__":
    main()
