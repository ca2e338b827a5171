"""What the compiled decoding loop of `generate()` materialises, per gamma.

    python scripts/hlo_loop_ops.py --pair code --gammas 1 4 8 --temperatures 0 1

For the target alone and each gamma (and `--auto`), lowers and compiles the
program `generate()` runs (`keras_specdec.profiling.lower_generate`), prints
its compile time and, inside the decoding `while` loop, the count and result
bytes of each op kind (copies, nested whiles, dynamic-update-slices,
concatenates, fusions), then the largest buffers. Ops that grow with gamma
are per-round work that neither c nor v counts.
"""

import argparse
import os
import time

os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "--pair", default="code", help="The shipped pair to load (a causal LM)."
    )
    p.add_argument(
        "--gammas",
        type=int,
        nargs="+",
        default=[1, 4, 8],
        help="Fixed gammas (draft tokens per round) to compile, each after the "
        "target alone.",
    )
    p.add_argument(
        "--temperatures",
        type=float,
        nargs="+",
        default=[0, 1],
        help="Base sampler temperatures: 0 is greedy, others random sampling "
        "at that temperature.",
    )
    p.add_argument(
        "--max-length",
        type=int,
        default=128,
        help="Sequence length the benchmark prompt is padded to for generate().",
    )
    p.add_argument(
        "--auto",
        action="store_true",
        help="Also compile the 'auto' gamma (at most max(--gammas) draft tokens).",
    )
    p.add_argument(
        "--save-dir",
        default=None,
        help="Write each compiled program's HLO text into this folder.",
    )
    args = p.parse_args(argv)

    import keras_hub

    import keras_specdec
    from keras_specdec import profiling

    target, draft = keras_specdec.pairs.load(args.pair)
    prompts = keras_specdec.pairs.benchmark_prompts(args.pair)[:1]
    inputs = target.preprocessor.generate_preprocess(
        prompts, sequence_length=args.max_length
    )
    for t in args.temperatures:
        base = (
            keras_hub.samplers.GreedySampler()
            if t == 0
            else keras_hub.samplers.RandomSampler(temperature=t, seed=0)
        )
        configs = [("target alone", base)]
        configs += [
            (
                f"gamma {g}",
                keras_specdec.SpeculativeSampler(draft, g, base_sampler=base, seed=0),
            )
            for g in args.gammas
        ]
        if args.auto:
            configs.append(
                (
                    "auto",
                    keras_specdec.SpeculativeSampler(
                        draft, "auto", base_sampler=base, seed=0,
                        max_speculative_tokens=max(args.gammas),
                        cost_coefficient=0.035,
                    ),
                )
            )  # fmt: skip
        for name, sampler in configs:
            target.compile(sampler=sampler)
            start = time.perf_counter()
            text = profiling.lower_generate(target, inputs).compile().as_text()
            seconds = time.perf_counter() - start
            if args.save_dir:
                os.makedirs(args.save_dir, exist_ok=True)
                file = f"T{t}_{name.replace(' ', '_')}.hlo.txt"
                with open(os.path.join(args.save_dir, file), "w") as f:
                    f.write(text)
            summary = profiling.summarize_loop_ops(text)
            print(f"T={t} {name}: lower + compile {seconds:.1f} s", flush=True)
            for opcode, (count, nbytes) in summary.items():
                print(f"    {opcode:24s} {count:6d} ops {nbytes / 1e6:9.3f} MB")
            print(profiling.format_loop_ops(profiling.loop_buffer_ops(text), top=8))


if __name__ == "__main__":
    main()
