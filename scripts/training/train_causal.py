"""Train (or resume training) a small GPT-2 style KerasHub causal LM on a
token corpus made by ``scripts/data/prepare_code_corpus.py``.

Resumable: every ``--checkpoint-steps`` steps the full model (weights and
optimizer state) is saved to ``<out>/checkpoint.keras`` with the step count in
``<out>/progress.json``; running the same command again continues from there
on the same learning-rate schedule. Never run by CI (hours of CPU).

Example (the shipped code pair):
    python scripts/training/train_causal.py --data data/code \\
        --out /work/ckpt/code_target --layers 6 --hidden 256 --heads 4 \\
        --total-tokens 30e6
    python scripts/training/train_causal.py --data data/code \\
        --out /work/ckpt/code_draft --layers 2 --hidden 128 --heads 2 \\
        --total-tokens 30e6
"""

import json
import math
import os
import time

os.environ.setdefault("KERAS_BACKEND", "jax")

import keras  # noqa: E402
import keras_hub  # noqa: E402
import numpy as np  # noqa: E402
from training_utils import (  # noqa: E402  (scripts/training/ is on sys.path)
    add_run_options,
    argument_parser,
    calibrate_total_steps,
    end_chunk,
    restore_optimizer,
)


def build_model(vocab_size, args):
    backbone = keras_hub.models.GPT2Backbone(
        vocabulary_size=vocab_size,
        num_layers=args.layers,
        num_heads=args.heads,
        hidden_dim=args.hidden,
        intermediate_dim=4 * args.hidden,
        dropout=args.dropout,
        max_sequence_length=args.max_sequence_length,
    )
    return keras_hub.models.GPT2CausalLM(backbone=backbone, preprocessor=None)


def compile_model(model, args, total_steps):
    warmup = min(500, total_steps // 10)
    schedule = keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=args.lr / 100,
        decay_steps=total_steps - warmup,
        alpha=0.05,
        warmup_target=args.lr,
        warmup_steps=warmup,
    )
    model.compile(
        optimizer=keras.optimizers.AdamW(
            schedule, weight_decay=0.01, global_clipnorm=1.0
        ),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        weighted_metrics=["accuracy"],
    )


def windows(tokens, starts, seq_len):
    idx = starts[:, None] + np.arange(seq_len + 1)[None, :]
    batch = tokens[idx].astype("int32")
    x = {
        "token_ids": batch[:, :-1],
        "padding_mask": np.ones((len(starts), seq_len), dtype=bool),
    }
    return x, batch[:, 1:]


def calibrate(model, train, args):
    rng = np.random.default_rng(12345)
    starts = rng.integers(0, train.size - args.seq_len - 1, size=80 * args.batch_size)
    x, y = windows(train, starts, args.seq_len)
    return calibrate_total_steps(
        model,
        lambda m, steps: compile_model(m, args, steps),
        x,
        y,
        batch_size=args.batch_size,
        minutes=args.time_budget_minutes,
    )


def main():
    p = argument_parser(__doc__)
    p.add_argument(
        "--data",
        default="data/code",
        help="The corpus directory of scripts/data/prepare_code_corpus.py.",
    )
    add_run_options(p)
    p.add_argument("--layers", type=int, default=6, help="Transformer layers.")
    p.add_argument("--hidden", type=int, default=256, help="The model width.")
    p.add_argument("--heads", type=int, default=4, help="Attention heads.")
    p.add_argument("--dropout", type=float, default=0.0, help="The dropout rate.")
    p.add_argument(
        "--max-sequence-length",
        type=int,
        default=512,
        help="The longest context the model supports (its position table).",
    )
    p.add_argument(
        "--seq-len", type=int, default=256, help="Tokens per training window."
    )
    p.add_argument(
        "--batch-size", type=int, default=16, help="Training windows per step."
    )
    p.add_argument(
        "--lr", type=float, default=3e-3, help="The peak AdamW learning rate."
    )
    p.add_argument(
        "--total-tokens",
        type=float,
        default=30e6,
        help="Training tokens in all; sets the step count and the cosine "
        "schedule's length.",
    )
    p.add_argument(
        "--time-budget-minutes",
        type=float,
        default=None,
        help="Size the run to this wall time: time a few steps on this "
        "machine, then set --total-tokens so that the cosine schedule ends "
        "within the budget (fresh runs only; a resumed run keeps its size).",
    )
    p.add_argument(
        "--seed", type=int, default=0, help="The seed of weights and windows."
    )
    p.add_argument(
        "--init-from",
        default=None,
        help="A shipped preset directory (e.g. keras_specdec/pairs/code/target) "
        "to continue from when --out has no checkpoint: its weights are loaded, "
        "the step count is read from the pair's training.json, and the "
        "optimizer state starts afresh.",
    )
    args = p.parse_args()

    os.makedirs(args.out, exist_ok=True)
    train = np.load(os.path.join(args.data, "train.npy"))
    valid = np.load(os.path.join(args.data, "valid.npy"))
    with open(os.path.join(args.data, "vocabulary.json")) as f:
        vocab_size = len(json.load(f))
    tokens_per_step = args.batch_size * args.seq_len
    total_steps = int(math.ceil(args.total_tokens / tokens_per_step))

    ckpt = os.path.join(args.out, "checkpoint.keras")
    progress_path = os.path.join(args.out, "progress.json")
    optimizer_path = os.path.join(args.out, "optimizer.npz")
    if os.path.exists(ckpt):
        model = keras.models.load_model(ckpt)
        with open(progress_path) as f:
            progress = json.load(f)
        total_steps = int(math.ceil(progress["args"]["total_tokens"] / tokens_per_step))
        # KerasHub tasks override compile(), so load_model() does not restore
        # the optimizer: recompile, then load its saved variables.
        compile_model(model, args, total_steps)
        restore_optimizer(model, optimizer_path, progress["step"])
        print(f"resuming at step {progress['step']} / {total_steps}")
    else:
        keras.utils.set_random_seed(args.seed)
        model = build_model(vocab_size, args)
        if args.time_budget_minutes:
            total_steps = calibrate(model, train, args)
            args.total_tokens = float(total_steps * tokens_per_step)
        compile_model(model, args, total_steps)
        progress = {"step": 0, "history": [], "args": vars(args)}
        if args.init_from:
            shipped = keras_hub.models.CausalLM.from_preset(args.init_from)
            model.backbone.set_weights(shipped.backbone.get_weights())
            role = os.path.basename(os.path.normpath(args.init_from))
            summary_path = os.path.join(
                os.path.dirname(os.path.normpath(args.init_from)), "training.json"
            )
            with open(summary_path) as f:
                last = json.load(f)[role]["last"]
            progress["step"] = int(last["step"])
            progress["history"].append(last)
            # Advance the learning-rate schedule to the shipped step.
            model.optimizer.iterations.assign(progress["step"])
            print(f"continuing {args.init_from} from step {progress['step']}")
    print(
        f"params {model.count_params():,}; {total_steps} steps of "
        f"{tokens_per_step} tokens"
    )

    rng = np.random.default_rng(args.seed + 1)
    valid_starts = rng.integers(0, valid.size - args.seq_len - 1, size=64)
    valid_x, valid_y = windows(valid, valid_starts, args.seq_len)

    start_time = time.time()
    while progress["step"] < total_steps:
        chunk = min(args.checkpoint_steps, total_steps - progress["step"])
        step_rng = np.random.default_rng([args.seed, progress["step"]])
        starts = step_rng.integers(
            0, train.size - args.seq_len - 1, size=chunk * args.batch_size
        )
        x, y = windows(train, starts, args.seq_len)
        t0 = time.time()
        hist = keras.Model.fit(
            model, x, y, batch_size=args.batch_size, epochs=1, shuffle=False, verbose=2
        )
        elapsed = time.time() - t0
        progress["step"] += chunk
        val_loss, val_acc = keras.Model.evaluate(
            model, valid_x, valid_y, batch_size=16, verbose=0
        )
        record = {
            "step": progress["step"],
            "tokens": progress["step"] * tokens_per_step,
            "train_loss": float(hist.history["loss"][-1]),
            "valid_loss": float(val_loss),
            "valid_perplexity": float(np.exp(val_loss)),
            "valid_accuracy": float(val_acc),
            "tokens_per_second": chunk * tokens_per_step / elapsed,
        }
        if end_chunk(model, record, progress, args, start_time):
            break
    if not args.no_checkpoint:
        model.save_weights(os.path.join(args.out, "final.weights.h5"))


if __name__ == "__main__":
    main()
