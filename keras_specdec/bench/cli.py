"""The benchmark's command line: `python -m keras_specdec.bench`.

See `keras_specdec.bench` for what a run measures; `--help` lists every
option. `main(argv)` parses, runs, writes results.json, results.md and the
plots into `--out`, and returns the rows.
"""

import argparse
import json
import os
import sys
import time

from keras_specdec.bench.plots import plot
from keras_specdec.bench.report import to_markdown
from keras_specdec.bench.run import log, run, write_prompts

# Where runs go unless `--out` says otherwise: a new folder per run, so a run
# never overwrites the results shipped in `benchmarks/`.
DEFAULT_OUT_ROOT = "benchmark_runs"

PROG = "python -m keras_specdec.bench"


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Appends "(default: ...)" to each option's help, except where the
    default is None (the help text says what happens then)."""

    def _get_help_string(self, action):
        if action.default is None:
            return action.help
        return super()._get_help_string(action)


def build_parser():
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=(
            "Time generate() of a target model alone and with speculative "
            "decoding on a shipped (or local) target/draft pair, next to "
            "Theorem 3.8 of Leviathan et al. (2023). Writes results.json, "
            "results.md and PNG plots into --out."
        ),
        formatter_class=_HelpFormatter,
    )
    parser.add_argument(
        "--pair",
        default="code",
        help="The shipped pair to benchmark ('code' or 'ende'), or the path of "
        "a directory laid out like one (target/, draft/, prompts).",
    )
    parser.add_argument(
        "--draft",
        default="model",
        choices=["model", "head"],
        help="The pair's draft to time at --gammas: 'model' (its draft model) "
        "or 'head' (its trained draft head, which reads the target's hidden "
        "states; code pair).",
    )
    parser.add_argument(
        "--profile",
        type=int,
        default=0,
        metavar="CALLS",
        help="Also trace CALLS generate() calls of each configuration with "
        "the JAX profiler (first prompt batch) and report where a round's "
        "time goes inside the real program (CPU; 0: off).",
    )
    parser.add_argument(
        "--gammas",
        type=int,
        nargs="+",
        default=[1, 2, 3, 4, 5, 6],
        help="The fixed numbers of draft tokens per round (gamma) to time.",
    )
    parser.add_argument(
        "--temperatures",
        type=float,
        nargs="+",
        default=[0, 1],
        help="Sampling temperatures; 0 means greedy decoding.",
    )
    parser.add_argument(
        "--batch-sizes",
        type=int,
        nargs="+",
        default=[1],
        help="Rows per generate() call. Batch B uses ceil(N / B) batches of "
        "the N prompts (at least one); row r of batch j holds prompt "
        "(j * B + r) mod N.",
    )
    parser.add_argument(
        "--max-length",
        type=int,
        default=128,
        help="The sequence length every call generates to (prompt included); "
        "stop tokens are ignored, so every call does fixed work.",
    )
    parser.add_argument(
        "--prompt-tokens",
        type=int,
        default=64,
        help="Causal pairs: each prompt is cut to its first this many tokens.",
    )
    parser.add_argument(
        "--num-prompts",
        type=int,
        default=None,
        help="Use only the first this many held-out prompts (default: all).",
    )
    parser.add_argument(
        "--repetitions",
        type=int,
        default=3,
        help="Timed passes over all prompts per configuration; the median "
        "call time is reported.",
    )
    parser.add_argument(
        "--cost-repetitions",
        type=int,
        default=30,
        help="Repetitions of the compiled-loop timing of target steps, verify "
        "passes and draft steps (c and v) per batch size.",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="Seed of the speculative samplers."
    )
    parser.add_argument(
        "--schedules",
        nargs="*",
        default=[],
        choices=["auto", "heuristic"],
        help="Adaptive gamma schedules to time next to the fixed gammas, with "
        "max_speculative_tokens = max(--gammas): 'auto' is the Theorem 3.8 "
        "schedule with the measured c and v, 'heuristic' is HF's +2/-1 rule.",
    )
    parser.add_argument(
        "--model-free-drafts",
        nargs="*",
        default=[],
        choices=["unigram", "bigram", "prompt_lookup"],
        help="Model-free drafts to time as well (their cost c is taken as 0).",
    )
    parser.add_argument(
        "--model-free-gammas",
        type=int,
        nargs="+",
        default=[2, 4],
        help="The gammas at which the model-free drafts are timed.",
    )
    parser.add_argument(
        "--fit-files",
        type=int,
        default=150,
        help="Python standard library files the unigram and bigram drafts are "
        "fitted on.",
    )
    parser.add_argument(
        "--prompts",
        default=None,
        metavar="FILE",
        help="A JSON file of token-id prompts written by --write-prompts: the "
        "models are built from the pair's backbones without a preprocessor, "
        "so the run needs no tokenizer and no TensorFlow (causal pairs; "
        "None means the pair's text prompts).",
    )
    parser.add_argument(
        "--write-prompts",
        default=None,
        metavar="FILE",
        help="Tokenize the pair's held-out prompts (cut to --prompt-tokens, "
        "first --num-prompts) into this JSON file for --prompts, and exit.",
    )
    parser.add_argument(
        "--target-weights",
        default=None,
        help="Backbone weights to load into the target (best.weights.h5 of "
        "scripts/training/train_causal.py); None keeps the pair's weights.",
    )
    parser.add_argument(
        "--draft-weights",
        default=None,
        help="Backbone weights to load into the draft; None keeps the pair's weights.",
    )
    parser.add_argument(
        "--out",
        default=None,
        help="Directory for results.json, results.md and the plots; files "
        "there are overwritten. Default: a new folder "
        f"{DEFAULT_OUT_ROOT}/<pair>-<date>-<time> under the current "
        "directory, so a run never overwrites the results shipped in "
        "benchmarks/.",
    )
    return parser


def main(argv=None):
    """Parse `argv` (default: the command line), run, write the results.

    Returns:
        The rows (a list of dicts, as in results.json); None after
        `--write-prompts`.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    check_args(parser, args)
    if args.write_prompts:
        write_prompts(args)
        return None
    if args.out is None:
        pair_name = os.path.basename(os.path.normpath(args.pair))
        args.out = os.path.join(
            DEFAULT_OUT_ROOT, f"{pair_name}-{time.strftime('%Y%m%d-%H%M%S')}"
        )
    os.makedirs(args.out, exist_ok=True)
    log(f"results will be written to {args.out}/")
    command = f"{PROG} " + " ".join(argv if argv is not None else sys.argv[1:])

    def write(rows):
        write_results(args.out, rows, command.strip())

    rows = run(args, on_rows=write)
    markdown = write_results(args.out, rows, command.strip())
    try:
        plots = plot(rows, args.out)
    except ImportError as error:  # e.g. a GPU machine without matplotlib
        log(f"no plots ({error}); pip install matplotlib for them")
        plots = []
    print(markdown)
    log(f"wrote results.json, results.md, {', '.join(plots)} to {args.out}/")
    return rows


def check_args(parser, args):
    """Refuse option values that cannot run, before loading anything."""
    import keras_specdec

    args.temperatures = [int(t) if t == int(t) else t for t in args.temperatures]
    for name in ("gammas", "model_free_gammas", "batch_sizes"):
        if min(getattr(args, name)) < 1:
            parser.error(f"--{name.replace('_', '-')} must all be >= 1.")
    if args.draft == "head" and (args.prompts or args.draft_weights):
        parser.error(
            "--draft head loads the pair's shipped head preset: run it with "
            "the pair's text prompts and without --draft-weights."
        )
    if args.prompts is None:
        return
    if args.write_prompts:
        parser.error("--prompts and --write-prompts: give one of them.")
    try:
        target_dir = keras_specdec.pairs.path(args.pair, "target")
    except ValueError as error:
        parser.error(str(error))
    if keras_specdec.pairs.is_seq2seq(target_dir):
        parser.error(
            "--prompts (token ids) serves causal pairs only; run an "
            "encoder-decoder pair with its text prompts (no --prompts)."
        )
    if {"unigram", "bigram"} & set(args.model_free_drafts):
        parser.error(
            "--model-free-drafts unigram/bigram are fitted on text with the "
            "pair's tokenizer: with --prompts, use prompt_lookup only."
        )


def write_results(out, rows, command):
    """Write results.json (the rows, the command, the device) and
    results.md into `out`; return the markdown."""
    import jax

    device = str(jax.devices()[0].device_kind)
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump({"command": command, "device": device, "rows": rows}, f, indent=1)
    markdown = to_markdown(rows, command)
    with open(os.path.join(out, "results.md"), "w") as f:
        f.write(markdown)
    return markdown
