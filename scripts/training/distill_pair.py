"""Distil a shipped pair's draft towards its target and report alpha before
and after on held-out inputs (keras_specdec.distill).

Training data (never the held-out files / sentences):
- ``code``: windows of real Python source from the standard library,
  tokenised with the pair's tokenizer, skipping the files the held-out
  prompts come from (teacher forcing on code the target was trained on).
- ``ende``: the target's own greedy translations of English sentences from
  ``scripts/data/prepare_ende_corpus.py``'s ``train.en`` (``--ende-data``).

Held-out inputs (alpha is estimated on them by teacher forcing, at
temperature 0 and 1):
- ``code``: the target's own continuations (greedy, and sampled at T=1) of
  the held-out prompts (`pairs.benchmark_prompts`), plus windows of the
  held-out files' real source.
- ``ende``: the target's own greedy and sampled translations of the first
  ``--held-out`` held-out test sources (`pairs.benchmark_prompts`).

Training stops after ``--minutes`` of fitting (a callback) and saves the
distilled draft as a KerasHub preset in ``<out>/draft``; the alpha report
goes to ``<out>/report.json``. Every epoch is backed up with
BackupAndRestore in ``<out>/backup``: rerunning the command after a crash
resumes there (a run that ends normally, also by ``--minutes``, deletes its
backup; continue it with ``--draft <out>/draft``). The data is cached in
``<out>/data.npz`` and reused by a rerun.

Example:
    nice -n 10 python scripts/training/distill_pair.py --pair code --out /tmp/d/code \\
        --minutes 5
    nice -n 10 python scripts/training/distill_pair.py --pair ende --out /tmp/d/ende \\
        --ende-data data/ende --minutes 5
"""

import json
import os
import sys
import sysconfig
import time

os.environ.setdefault("KERAS_BACKEND", "jax")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from training_utils import argument_parser  # noqa: E402  (scripts/training/ is on sys.path)

from keras_specdec import analysis, distill, pairs  # noqa: E402


class TimeLimit(keras.callbacks.Callback):
    """Stops `fit` after `minutes` of training (at a batch end)."""

    def __init__(self, minutes):
        super().__init__()
        self.seconds = 60 * minutes

    def on_train_begin(self, logs=None):
        self.start = time.time()

    def on_train_batch_end(self, batch, logs=None):
        if time.time() - self.start > self.seconds:
            self.model.stop_training = True


def code_windows(tokenizer, files, length, max_windows, seed):
    """Non-overlapping `length`-token windows of `files`' source."""
    windows = []
    for path in files:
        with open(path, encoding="utf-8", errors="replace") as f:
            ids = np.asarray(tokenizer(f.read()))
        for start in range(0, len(ids) - length + 1, length):
            windows.append(ids[start : start + length])
        if len(windows) >= 4 * max_windows:
            break
    rng = np.random.default_rng(seed)
    windows = np.stack(windows)[rng.permutation(len(windows))[:max_windows]]
    return {
        "token_ids": windows.astype("int32"),
        "padding_mask": np.ones(windows.shape, bool),
    }


def stdlib_files(exclude):
    root = sysconfig.get_paths()["stdlib"]
    out = []
    for name in sorted(os.listdir(root)):
        if name.endswith(".py") and name not in exclude:
            out.append(os.path.join(root, name))
    return out


def generations(target, prompts, sampler, max_length, seed):
    keras.utils.set_random_seed(seed)
    target.compile(sampler=sampler)
    return distill.target_generations(target, prompts, max_length=max_length)


def main():
    p = argument_parser(__doc__)
    p.add_argument(
        "--pair",
        choices=["code", "ende"],
        required=True,
        help="The shipped pair whose draft is distilled towards its target.",
    )
    p.add_argument(
        "--out",
        required=True,
        help="Output folder for the distilled draft preset (draft/), "
        "report.json, the cached data (data.npz) and the resumable backup "
        "(backup/).",
    )
    p.add_argument(
        "--minutes",
        type=float,
        default=5.0,
        help="Stop fitting after this many minutes of training (at a batch end).",
    )
    p.add_argument(
        "--temperature",
        type=float,
        default=1.0,
        help="The sampling temperature the distillation divergence compares "
        "softmax(logits / T) at (0 means greedy).",
    )
    p.add_argument(
        "--divergence",
        default="forward_kl",
        help="The training loss between target and draft distributions: "
        "forward_kl, tvd (1 - acceptance rate) or reverse_kl.",
    )
    p.add_argument(
        "--lr",
        type=float,
        default=5e-4,
        help="Learning rate of the default AdamW optimizer.",
    )
    p.add_argument("--batch-size", type=int, default=16, help="Training rows per step.")
    p.add_argument(
        "--epochs",
        type=int,
        default=20,
        help="The most passes over the training data (--minutes may stop sooner).",
    )
    p.add_argument(
        "--length",
        type=int,
        default=256,
        help="Token length of each code window, and the generation length of "
        "the held-out code continuations (code pair only).",
    )
    p.add_argument(
        "--train-num",
        type=int,
        default=4000,
        help="Number of training rows: code windows, or English sentences "
        "from train.en translated by the target.",
    )
    p.add_argument(
        "--held-out",
        type=int,
        default=256,
        help="Size of the held-out alpha sets: the most windows of the "
        "held-out code files, or the number of held-out ende test sources.",
    )
    p.add_argument(
        "--ende-data",
        default="data/ende",
        help="Folder with train.en from scripts/data/prepare_ende_corpus.py (ende "
        "pair only).",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=0,
        help="Random seed for window selection and sampled target generations.",
    )
    p.add_argument(
        "--draft",
        default=None,
        help="Start from this draft preset (e.g. an earlier run's <out>/draft) "
        "instead of the shipped one.",
    )
    args = p.parse_args()
    os.makedirs(args.out, exist_ok=True)
    t0 = time.time()
    train = {}

    target, draft = pairs.load(args.pair)
    if args.draft:
        draft = type(draft).from_preset(args.draft)
        if draft.preprocessor is not None and args.pair in (
            pairs.SEQ2SEQ_SEQUENCE_LENGTHS
        ):
            length = pairs.SEQ2SEQ_SEQUENCE_LENGTHS[args.pair]
            draft.preprocessor.encoder_sequence_length = length
            draft.preprocessor.decoder_sequence_length = length
    prompts = pairs.benchmark_prompts(args.pair)
    held_out = {}
    cache = os.path.join(args.out, "data.npz")
    if os.path.exists(cache):  # a rerun: the same data
        with np.load(cache) as saved:
            for key in saved.files:
                name, field = key.split("/")
                (train if name == "train" else held_out.setdefault(name, {}))[field] = (
                    saved[key]
                )
    elif args.pair == "code":
        tokenizer = target.preprocessor.tokenizer
        held_files = {entry["source"] for entry in _code_prompt_entries()}
        for name, sampler in (("greedy", "greedy"), ("random", "random")):
            rows = prompts if name == "greedy" else prompts * 4
            held_out[f"target_{name}"] = generations(
                target, rows, sampler, args.length, args.seed
            )
        roots = [sysconfig.get_paths()[k] for k in ("stdlib", "purelib")]
        held_out["held_out_files"] = code_windows(
            tokenizer,
            [
                os.path.join(root, f)
                for f in sorted(held_files)
                for root in roots
                if os.path.isfile(os.path.join(root, f))
            ],
            args.length,
            args.held_out,
            args.seed,
        )
        train = code_windows(
            tokenizer,
            stdlib_files(held_files),
            args.length,
            args.train_num,
            args.seed,
        )
    else:
        sources = prompts[: args.held_out]
        for name in ("greedy", "random"):
            held_out[f"target_{name}"] = generations(
                target, sources, name, None, args.seed
            )
        with open(os.path.join(args.ende_data, "train.en"), encoding="utf-8") as f:
            train_sources = [next(f).rstrip("\n") for _ in range(args.train_num)]
        train = generations(target, train_sources, "greedy", None, args.seed)
    if not os.path.exists(cache):
        arrays = {f"train/{k}": v for k, v in train.items()}
        for name, inputs in held_out.items():
            arrays.update({f"{name}/{k}": v for k, v in inputs.items()})
        np.savez(cache, **arrays)
    print(
        f"data ready in {time.time() - t0:.0f} s: train "
        f"{ {k: v.shape for k, v in train.items()} }",
        flush=True,
    )

    def alphas():
        return {
            f"{name} T={temperature:g}": analysis.estimate_alpha(
                target,
                draft,
                inputs,
                base_sampler=distill.base_sampler_for(temperature),
            )
            for name, inputs in held_out.items()
            for temperature in (0.0, 1.0)
        }

    before = alphas()
    print("alpha before", json.dumps(before, indent=1), flush=True)
    fit_start = time.time()
    result = distill.distill_draft(
        target,
        draft,
        train,
        epochs=args.epochs,
        temperature=args.temperature,
        divergence=args.divergence,
        batch_size=args.batch_size,
        learning_rate=args.lr,
        callbacks=[
            keras.callbacks.BackupAndRestore(os.path.join(args.out, "backup")),
            TimeLimit(args.minutes),
        ],
        verbose=2,
    )
    fit_seconds = time.time() - fit_start
    after = alphas()
    print("alpha after", json.dumps(after, indent=1), flush=True)
    steps = int(len(result.history.history["loss"]))
    report = {
        "pair": args.pair,
        "args": vars(args),
        "train_shape": {k: list(v.shape) for k, v in train.items()},
        "epochs_run": steps,
        "fit_seconds": fit_seconds,
        "history": result.history.history,
        "alpha_before": before,
        "alpha_after": after,
        "command": " ".join(sys.argv),
    }
    with open(os.path.join(args.out, "report.json"), "w") as f:
        json.dump(report, f, indent=1)
    draft.save_to_preset(os.path.join(args.out, "draft"))
    print(f"done in {time.time() - t0:.0f} s", flush=True)


def _code_prompt_entries():
    with open(os.path.join(pairs.pair_dir("code"), "prompts.json")) as f:
        return json.load(f)


if __name__ == "__main__":
    main()
