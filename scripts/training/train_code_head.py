"""Train the code pair's EAGLE-style draft head on CPU (resumable) and export it.

    python scripts/data/prepare_head_corpus.py --out /work/head_run/data
    python scripts/training/train_code_head.py --data /work/head_run/data \
        --run-dir /work/head_run --steps 600 --stop-at 09:47

The target (``keras_specdec/pairs/code/target``) is frozen; the head
(`keras_specdec.heads.DraftHead.from_target`, decoder layer initialised from
the target's last transformer layer) is trained with
`keras_specdec.head_distill.distill_head` on sequences cut from the
corpus' training tokens, AdamW with a warmup + cosine schedule. Running the
same command again resumes from the last `BackupAndRestore` checkpoint in
``--run-dir``. At the end (or at ``--stop-at``) the head is saved as a float16
preset to ``--export`` and ``--run-dir/summary.json`` records the run
(tokens, steps, losses, acceptance rate alpha before and after on held-out
files, wall time, command).
"""

import argparse
import json
import os
import sys
import time

import numpy as np


def parse_args():
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "--data",
        default="data/code_head",
        help="Directory with train.npy / valid.npy from "
        "scripts/data/prepare_head_corpus.py.",
    )
    p.add_argument(
        "--run-dir",
        default="ck/code_head",
        help="Directory for the resumable checkpoint, the CSV log and summary.json.",
    )
    p.add_argument(
        "--export",
        default="keras_specdec/pairs/code/head",
        help="Preset directory the trained head is written to (float16 weights).",
    )
    p.add_argument("--seq-len", type=int, default=256, help="Tokens per training row.")
    p.add_argument("--batch-size", type=int, default=8, help="Rows per step.")
    p.add_argument(
        "--steps", type=int, default=600, help="Steps of the learning-rate schedule."
    )
    p.add_argument(
        "--steps-per-epoch",
        type=int,
        default=20,
        help="Steps between checkpoints (one Keras epoch each).",
    )
    p.add_argument("--lr", type=float, default=2e-3, help="Peak learning rate.")
    p.add_argument(
        "--warmup", type=int, default=30, help="Linear warmup steps of the schedule."
    )
    p.add_argument(
        "--step2-weight",
        type=float,
        default=0.5,
        help="Weight of the loss of draft step 2 (head fed its own feature).",
    )
    p.add_argument(
        "--feature-weight",
        type=float,
        default=1.0,
        help="Weight of the smooth-L1 feature regression term.",
    )
    p.add_argument(
        "--kl-weight",
        type=float,
        default=1.0,
        help="Weight of the forward-KL term against the target's distribution.",
    )
    p.add_argument(
        "--feature-noise",
        type=float,
        default=0.0,
        help="Half-width of uniform noise on the true features fed in training.",
    )
    p.add_argument(
        "--no-init-from-target",
        action="store_true",
        help="Start the decoder layer from random weights instead of a copy of "
        "the target's last transformer layer.",
    )
    p.add_argument(
        "--init-from",
        default=None,
        help="Continue from a DraftHead preset directory (a new schedule) instead "
        "of a new head.",
    )
    p.add_argument(
        "--valid-rows",
        type=int,
        default=32,
        help="Held-out rows (of --seq-len tokens) for the alpha estimate.",
    )
    p.add_argument(
        "--stop-at",
        default=None,
        help="UTC wall-clock time HH:MM after which training stops and the "
        "head is exported (None: run the whole schedule).",
    )
    p.add_argument("--seed", type=int, default=0, help="Seed of the row order.")
    p.add_argument(
        "--record",
        default=None,
        help='A pair\'s training.json to record the run in (its "head" entry).',
    )
    return p.parse_args()


def rows(tokens, seq_len, seed=None, limit=None):
    n = len(tokens) // seq_len
    ids = np.asarray(tokens[: n * seq_len], dtype="int32").reshape(n, seq_len)
    if seed is not None:
        ids = ids[np.random.default_rng(seed).permutation(n)]
    if limit:
        ids = ids[:limit]
    return {"token_ids": ids, "padding_mask": np.ones_like(ids, dtype=bool)}


def deadline_seconds(stop_at):
    if not stop_at:
        return None
    hours, minutes = (int(x) for x in stop_at.split(":"))
    now = time.gmtime()
    day_start = time.time() - (now.tm_hour * 3600 + now.tm_min * 60 + now.tm_sec)
    return day_start + hours * 3600 + minutes * 60


def main():
    args = parse_args()
    os.environ.setdefault("KERAS_BACKEND", "jax")
    root = os.path.dirname(os.path.abspath(__file__))
    sys.path.insert(0, os.path.dirname(os.path.dirname(root)))
    import keras

    from keras_specdec import head_distill, heads, pairs

    os.makedirs(args.run_dir, exist_ok=True)
    started = time.time()
    keras.utils.set_random_seed(args.seed)
    target, _ = pairs.load("code")
    if args.init_from:
        head = heads.DraftHead.from_preset(args.init_from)
    else:
        head = heads.DraftHead.from_target(target)
    if not (args.no_init_from_target or args.init_from):
        head.decoder.set_weights(target.backbone.transformer_layers[-1].get_weights())
    train = rows(np.load(os.path.join(args.data, "train.npy")), args.seq_len, args.seed)
    valid = rows(
        np.load(os.path.join(args.data, "valid.npy")),
        args.seq_len,
        limit=args.valid_rows,
    )
    print(f"train rows {len(train['token_ids'])}, valid rows {len(valid['token_ids'])}")

    before_file = os.path.join(args.run_dir, "alpha_before.json")
    if os.path.isfile(before_file):
        with open(before_file) as f:
            alpha_before = json.load(f)
    else:
        t = time.time()
        alpha_before = head_distill.estimate_head_alpha(target, head, valid)
        print(f"alpha before {alpha_before} ({time.time() - t:.0f} s)", flush=True)
        with open(before_file, "w") as f:
            json.dump(alpha_before, f)

    schedule = keras.optimizers.schedules.CosineDecay(
        0.0,
        decay_steps=max(1, args.steps - args.warmup),
        warmup_target=args.lr,
        warmup_steps=args.warmup,
        alpha=0.05,
    )
    optimizer = keras.optimizers.AdamW(schedule, weight_decay=0.01, global_clipnorm=1.0)
    deadline = deadline_seconds(args.stop_at)

    class StopAtDeadline(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if deadline is not None and time.time() > deadline:
                print("\nstop: --stop-at reached", flush=True)
                self.model.stop_training = True

    callbacks = [
        keras.callbacks.BackupAndRestore(os.path.join(args.run_dir, "backup")),
        keras.callbacks.CSVLogger(os.path.join(args.run_dir, "log.csv"), append=True),
        StopAtDeadline(),
    ]
    epochs = -(-args.steps // args.steps_per_epoch)
    result = head_distill.distill_head(
        target,
        head,
        train,
        epochs=epochs,
        steps_per_epoch=args.steps_per_epoch,
        batch_size=args.batch_size,
        optimizer=optimizer,
        feature_weight=args.feature_weight,
        kl_weight=args.kl_weight,
        step2_weight=args.step2_weight,
        feature_noise=args.feature_noise,
        callbacks=callbacks,
        verbose=2,
    )
    steps_done = int(optimizer.iterations.numpy())
    head.save_to_preset(args.export)
    t = time.time()
    alpha_after = head_distill.estimate_head_alpha(target, head, valid)
    print(f"alpha after {alpha_after} ({time.time() - t:.0f} s)", flush=True)
    history = {k: [float(x) for x in v] for k, v in result.history.history.items()}
    summary = {
        "parameters": int(head.count_params()),
        "trainable_parameters": int(
            sum(int(np.prod(w.shape)) for w in head.trainable_weights)
        ),
        "config": head.get_config(),
        "steps": steps_done,
        "tokens": steps_done * args.batch_size * args.seq_len,
        "train_tokens_available": int(train["token_ids"].size),
        "last_epoch": {k: v[-1] for k, v in history.items()} if history else None,
        "alpha_step1_before": alpha_before[0],
        "alpha_step2_before": alpha_before[1],
        "alpha_step1_after": alpha_after[0],
        "alpha_step2_after": alpha_after[1],
        "alpha_held_out": f"{len(valid['token_ids'])} rows x {args.seq_len} tokens "
        "of held-out files, teacher forcing, T=1 (sum_x min(p, q))",
        "wall_seconds_this_call": time.time() - started,
        "args": vars(args),
        "command": "python " + " ".join(sys.argv),
    }
    with open(os.path.join(args.run_dir, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    if args.record:
        record(args.record, summary)
    print(json.dumps(summary, indent=1))


def record(training_json, summary):
    """Write `summary` as the "head" entry of a pair's training.json."""
    with open(training_json) as f:
        training = json.load(f)
    training["head"] = summary
    with open(training_json, "w") as f:
        json.dump(training, f, indent=1)


if __name__ == "__main__":
    main()
