"""Pieces shared by the training scripts: their argument parser, optimizer
state beside a checkpoint, the end of each training chunk (best weights,
checkpoint, progress), and sizing a run to a wall-time budget.

Why the training scripts loop over `fit()` calls instead of one `fit()` with
`keras.callbacks.BackupAndRestore` / `ModelCheckpoint`: each chunk trains on
windows drawn with a seed of the step count (same data order after a resume),
the best weights are saved as the *backbone* only (what the export scripts
and `python -m keras_specdec.bench --target-weights` load; `ModelCheckpoint`
would save the task and its optimizer state, 3x the size), every chunk
appends a record with tokens/s to progress.json (exported to training.json),
`--max-minutes` stops between chunks, `--init-from` starts the schedule at a
shipped step, and runs in progress (scripts/training/device_train.sh) resume
from checkpoint.keras + optimizer.npz. Callbacks would cover only the
save/restore lines, need four custom callbacks for the rest, and change the
checkpoint format those runs resume from.
"""

import argparse
import json
import os
import time

import keras
import numpy as np

from keras_specdec.model_utils import ignore_t5_mask_warning  # noqa: E402,F401


def save_optimizer(model, path):
    values = [keras.ops.convert_to_numpy(v) for v in model.optimizer.variables]
    with open(path + ".tmp", "wb") as f:
        np.savez(f, *values)
    os.replace(path + ".tmp", path)


def restore_optimizer(model, path, step):
    """KerasHub tasks override `compile()`, so `load_model` does not restore
    the optimizer (it keeps the task's default one): after recompiling, load
    the optimizer's variables (step count, moments) saved beside the
    checkpoint; without that file only the step count is restored."""
    model.optimizer.build(model.trainable_variables)
    if not os.path.exists(path):
        print("warning: no optimizer.npz; the optimizer moments start afresh")
        model.optimizer.iterations.assign(step)
        return
    with np.load(path) as saved:
        values = [saved[f"arr_{i}"] for i in range(len(saved.files))]
    variables = model.optimizer.variables
    assert len(values) == len(variables), (len(values), len(variables))
    for variable, value in zip(variables, values):
        assert tuple(variable.shape) == value.shape, (variable.path, value.shape)
        variable.assign(value)


def calibrate_total_steps(
    model, compile_model, x, y, *, batch_size, minutes, sample_weight=None,
    timed_steps=60,
):  # fmt: skip
    """Steps that fit in `minutes`, from timing steps here.

    `compile_model(model, total_steps)` compiles; `x` (a dict of arrays), `y`
    and optional `sample_weight` hold at least 80 batches of calibration
    data. 20 steps warm up (the first compiles), `timed_steps` are timed;
    the initial weights are put back afterwards.
    """

    def fit_steps(first, count):
        part = slice(first * batch_size, (first + count) * batch_size)
        keras.Model.fit(
            model,
            {k: v[part] for k, v in x.items()},
            y[part],
            sample_weight=None if sample_weight is None else sample_weight[part],
            batch_size=batch_size,
            verbose=0,
        )

    initial_weights = model.get_weights()
    compile_model(model, 1000)
    fit_steps(0, 20)
    t0 = time.time()
    fit_steps(20, timed_steps)
    seconds_per_step = (time.time() - t0) / timed_steps
    # 20% for evaluation, checkpoints and the real run's compile.
    total_steps = int(0.8 * 60 * minutes / seconds_per_step)
    print(
        f"calibration: {seconds_per_step * 1000:.1f} ms/step -> "
        f"{total_steps} steps in {minutes} min",
        flush=True,
    )
    model.set_weights(initial_weights)
    return total_steps


def argument_parser(doc):
    """The parser of a script whose docstring is `doc`: its first paragraph
    as the description, and every option's default shown in `--help`."""
    return argparse.ArgumentParser(
        description=doc.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )


def add_run_options(p):
    """The options `end_chunk` reads, on parser `p`: --out,
    --checkpoint-steps, --max-minutes, --no-checkpoint."""
    p.add_argument(
        "--out",
        required=True,
        help="The output directory; rerunning the same command resumes from it.",
    )
    p.add_argument(
        "--checkpoint-steps",
        type=int,
        default=200,
        help="Steps between validations and checkpoints.",
    )
    p.add_argument(
        "--max-minutes",
        type=float,
        default=None,
        help="Stop (after a checkpoint) once this many minutes have passed "
        "(None: no limit); rerun the same command to resume.",
    )
    p.add_argument(
        "--no-checkpoint",
        action="store_true",
        help="Write only best.weights.h5 and progress.json, no resumable "
        "checkpoint.keras / optimizer.npz / final.weights.h5 (for one-shot runs "
        "on a machine whose disk is gone afterwards: saves time per chunk).",
    )


def end_chunk(model, record, progress, args, start_time):
    """After a chunk of training: log `record`, keep the best weights,
    checkpoint, save progress.json. Returns True when `--max-minutes` of
    training have passed (the caller stops; rerunning resumes).

    Files in `args.out`: best.weights.h5 (the backbone at the lowest
    validation loss so far), checkpoint.keras + optimizer.npz (unless
    `--no-checkpoint`), progress.json (`progress`, with `record` appended).
    """
    progress["history"].append(record)
    print(json.dumps(record), flush=True)
    if record["valid_loss"] <= min(r["valid_loss"] for r in progress["history"]):
        # The lowest validation loss so far: what gets exported.
        # Backbone only: a task model's save_weights also stores the
        # optimizer state (3x the size). The LM head is tied, so the
        # backbone holds every weight.
        # Written aside and swapped in, so a run killed mid-write keeps
        # the previous best file whole.
        tmp = os.path.join(args.out, "best.tmp.weights.h5")
        model.backbone.save_weights(tmp)
        os.replace(tmp, os.path.join(args.out, "best.weights.h5"))
        progress["best"] = record
    if not args.no_checkpoint:
        ckpt = os.path.join(args.out, "checkpoint.keras")
        model.save(ckpt + ".tmp.keras")
        os.replace(ckpt + ".tmp.keras", ckpt)
        save_optimizer(model, os.path.join(args.out, "optimizer.npz"))
    progress_path = os.path.join(args.out, "progress.json")
    with open(progress_path + ".tmp", "w") as f:
        json.dump(progress, f, indent=1)
    os.replace(progress_path + ".tmp", progress_path)
    if args.max_minutes and time.time() - start_time > 60 * args.max_minutes:
        print("time budget reached; rerun the same command to resume")
        return True
    return False
