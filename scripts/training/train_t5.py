"""Train (or resume training) a small T5 (v1.1 style) KerasHub encoder-decoder
on a sentence-pair corpus made by ``scripts/data/prepare_ende_corpus.py``.

The corpus is ``<data>/tokens.npz`` with uint16 arrays ``train_en``,
``train_de``, ``valid_en``, ``valid_de`` (each ``(N, L)``: sentencepiece ids,
then eos 1, right-padded with 0) and the tokenizer ``<data>/spm.model``. The
model is fed token arrays (``preprocessor=None``), so neither training nor
the exported presets' generation need TensorFlow text ops here.

Inputs are packed exactly like ``T5Seq2SeqLMPreprocessor`` does: the encoder
gets ``[ids..., eos, pad...]``; the decoder gets T5's start token (the pad id
0) followed by the target shifted right, ``[0, ids..., eos, pad...][:-1]``,
with a padding mask that is true on the start token and every real target
token; the labels are the target ``[ids..., eos, pad...]`` and the sample
weight is the target's padding mask. The loss is averaged over real target
tokens only (``reduction="mean_with_sample_weight"``), and the reported
validation loss, perplexity and accuracy are exact token-level averages over
real target tokens (weighted metrics).

Resumable: every ``--checkpoint-steps`` steps the model is saved to
``<out>/checkpoint.keras``, the optimizer state (step count, moments) to
``<out>/optimizer.npz`` (``load_model`` does not restore a KerasHub task's
optimizer: tasks override ``compile()``) and the step count to
``<out>/progress.json``; running the same command again continues from there
on the same learning-rate schedule and the same data order. Never run by CI.

Optimizer: Adafactor by default, because from-scratch T5 stalls under Adam.
KerasHub's T5 attention, like the original Mesh-TF T5, computes
softmax(q.k + position_bias) WITHOUT the 1/sqrt(d_kv) factor and compensates
at initialisation only: the query kernel starts with std
(num_heads * d_kv * d_kv)**-0.5 (0.0104 for d=192, 4 heads, d_kv=48), so the
initial logits have std ~1. T5 was trained with Adafactor, whose step for a
weight matrix is proportional to that matrix's RMS, so the small query scale
(and with it the implicit 1/sqrt(d_kv)) is kept. Adam/AdamW steps are
absolute, ~lr per entry: at lr 1e-3..5e-3 they are 10-50% of a query
entry's initial size per step, so within tens of steps the query/key scale is
set by the optimizer instead of the initialisation, the missing 1/sqrt(d_kv)
shows, and the softmax saturates (near one-hot attention, vanishing gradients
through it). Measured with scripts/t5_stall_probe.py (3 + 3 layers, d=192, 4
heads, batch 32 pairs of <= 16 tokens, lr 5e-3 with 50 warm-up steps, 500
steps, seed 0; unigram loss of the targets 6.27): AdamW ended at training
loss 5.85 with layer-0 self-attention logit std 57 (encoder) / 61 (decoder)
and query kernels at 2.6-6.8x their initial RMS; Adafactor ended at 5.43
with logit std 0.9 / 1.3 and query kernels at their initial RMS. The same
probe at batch 16 (<= 24 tokens), 200 steps: AdamW logit std 17 / 32 after
200 steps. A 1 + 1 layer model under AdamW saturates the same way in the
same probe (logit std 65 / 51, loss 5.88 at step 500); such drafts still
learned on the GPU in 11k steps (validation loss 3.63), the 3 + 3 model did
not (5.50): more saturated attention layers between input and output
(an explanation this probe does not separate). Warm-up does not avoid it
(the stalled H200 run of 3 + 3 d=192 had 500 warm-up steps at lr 1e-3).
``--optimizer adamw`` keeps the old behaviour (the shipped pairs were
trained with it; growing from a trained model and short fine-tuning are fine
with it); a resumed run keeps the optimizer it started with.

Example (English to German):
    python scripts/training/train_t5.py --data data/ende --out /work/ckpt/ende_target \\
        --layers 3 --hidden 256 --heads 4 --intermediate 512 --total-steps 20000
    python scripts/training/train_t5.py --data data/ende --out /work/ckpt/ende_draft \\
        --layers 1 --hidden 128 --heads 2 --intermediate 256 --total-steps 20000
"""

import argparse
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
    ignore_t5_mask_warning,
    restore_optimizer,
)

ignore_t5_mask_warning()

PAD = 0  # T5's pad id, also its decoder start token
OPTIMIZER_DEFAULT = "adafactor"  # see the module docstring


def build_model(vocab_size, args):
    backbone = keras_hub.models.T5Backbone(
        vocabulary_size=vocab_size,
        num_layers=args.layers,
        num_heads=args.heads,
        hidden_dim=args.hidden,
        intermediate_dim=args.intermediate,
        key_value_dim=args.key_value_dim,
        dropout=args.dropout,
        activation="gelu",
        use_gated_activation=True,
        tie_embedding_weights=True,
    )
    embedding_std = getattr(args, "embedding_std", None)
    if embedding_std is not None:
        embeddings = backbone.token_embedding.embeddings
        embeddings.assign(
            keras.random.truncated_normal(embeddings.shape, stddev=embedding_std)
        )
    return keras_hub.models.T5Seq2SeqLM(backbone=backbone, preprocessor=None)


def grow_from(model, small):
    """Function-preserving growth: `model` (more layers, same width) starts
    as the trained `small` model. Shared layers are copied; each extra layer
    is a copy of the small model's last layer with its residual branches'
    output projections zeroed, so it is the identity until trained."""
    big, little = model.backbone, small.backbone
    for name in (
        "token_embedding",
        "encoder_output_layer_norm",
        "decoder_output_layer_norm",
    ):
        big.get_layer(name).set_weights(little.get_layer(name).get_weights())
    for stack in ("encoder", "decoder"):
        n_small = little.num_layers
        for i in range(big.num_layers):
            layer = big.get_layer(f"transformer_{stack}_layer_{i}")
            source = little.get_layer(
                f"transformer_{stack}_layer_{min(i, n_small - 1)}"
            )
            src = list(source.weights)
            dst = list(layer.weights)
            if len(src) == len(dst) + 1:  # only layer 0 has the position bias
                src = src[1:]
            assert [tuple(w.shape) for w in src] == [tuple(w.shape) for w in dst]
            for s_var, d_var in zip(src, dst):
                value = s_var.numpy()
                if i >= n_small and "output_projector" in d_var.path:
                    value = np.zeros_like(value)
                d_var.assign(value)


def load_trained(ckpt_dir):
    """The trained T5Seq2SeqLM (no preprocessor) of an output directory of
    this script: best.weights.h5 (backbone weights of the lowest validation
    loss; what comes back from a GPU machine) rebuilt from progress.json with
    dropout 0, else checkpoint.keras."""
    weights = os.path.join(ckpt_dir, "best.weights.h5")
    if not os.path.exists(weights):
        model = keras.models.load_model(os.path.join(ckpt_dir, "checkpoint.keras"))
        model.preprocessor = None
        return model
    with open(os.path.join(ckpt_dir, "progress.json")) as f:
        config = dict(json.load(f)["args"])
    config["dropout"] = 0.0
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(
        model_file=os.path.join(config["data"], "spm.model")
    )
    model = build_model(sp.get_piece_size(), argparse.Namespace(**config))
    model.backbone.load_weights(weights)
    return model


def compile_model(model, args, total_steps):
    warmup = getattr(args, "warmup_steps", None)
    if warmup is None:
        warmup = min(500, total_steps // 10)
    schedule = keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=args.lr / 100,
        decay_steps=max(1, total_steps - warmup),
        alpha=0.05,
        warmup_target=args.lr,
        warmup_steps=warmup,
    )
    if getattr(args, "optimizer", "adamw") == "adafactor":
        optimizer = keras.optimizers.Adafactor(schedule)
    else:
        optimizer = keras.optimizers.AdamW(
            schedule,
            weight_decay=getattr(args, "weight_decay", 0.01),
            global_clipnorm=1.0,
        )
    model.compile(
        optimizer=optimizer,
        # Average over real target tokens, not over padding.
        loss=keras.losses.SparseCategoricalCrossentropy(
            from_logits=True, reduction="mean_with_sample_weight"
        ),
        weighted_metrics=[
            keras.metrics.SparseCategoricalCrossentropy(
                from_logits=True, name="token_loss"
            ),
            keras.metrics.SparseCategoricalAccuracy(name="accuracy"),
        ],
    )


def pack(source, target):
    """Model inputs, labels and sample weights, as T5Seq2SeqLMPreprocessor
    packs them (decoder start token = pad id 0)."""
    source = source.astype("int32")
    target = target.astype("int32")
    target_mask = target != PAD
    start = np.full((len(target), 1), PAD, dtype="int32")
    x = {
        "encoder_token_ids": source,
        "encoder_padding_mask": source != PAD,
        "decoder_token_ids": np.concatenate([start, target[:, :-1]], axis=1),
        "decoder_padding_mask": np.concatenate(
            [np.ones_like(start, dtype=bool), target_mask[:, :-1]], axis=1
        ),
    }
    return x, target, target_mask.astype("float32")


def batch_indices(num_examples, first, count, seed):
    """Indices of examples ``first .. first + count - 1`` of the training
    stream: a fresh seeded permutation per epoch (so resuming is exact)."""
    out = []
    pos, end = first, first + count
    while pos < end:
        epoch, offset = divmod(pos, num_examples)
        perm = np.random.default_rng([seed, epoch]).permutation(num_examples)
        take = perm[offset : offset + end - pos]
        out.append(take)
        pos += len(take)
    return np.concatenate(out)


def calibrate(model, train_src, train_tgt, args):
    idx = np.arange(80 * args.batch_size) % len(train_tgt)
    x, y, w = pack(train_src[idx], train_tgt[idx])
    return calibrate_total_steps(
        model,
        lambda m, steps: compile_model(m, args, steps),
        x,
        y,
        batch_size=args.batch_size,
        minutes=args.time_budget_minutes,
        sample_weight=w,
    )


def main():
    p = argument_parser(__doc__)
    p.add_argument(
        "--data",
        default="data/ende",
        help="The corpus directory of scripts/data/prepare_ende_corpus.py.",
    )
    add_run_options(p)
    p.add_argument("--source", default="en", help="The source language suffix.")
    p.add_argument("--target", default="de", help="The target language suffix.")
    p.add_argument(
        "--layers", type=int, default=3, help="Layers of the encoder and decoder each."
    )
    p.add_argument("--hidden", type=int, default=256, help="The model width.")
    p.add_argument("--heads", type=int, default=4, help="Attention heads.")
    p.add_argument(
        "--intermediate",
        type=int,
        default=None,
        help="The feed-forward width; None means 2 * --hidden.",
    )
    p.add_argument(
        "--key-value-dim",
        type=int,
        default=None,
        help="The attention key/value width per head; None means --hidden / --heads.",
    )
    p.add_argument("--dropout", type=float, default=0.1, help="The dropout rate.")
    p.add_argument(
        "--batch-size", type=int, default=64, help="Sentence pairs per step."
    )
    p.add_argument("--lr", type=float, default=3e-3, help="The peak learning rate.")
    p.add_argument(
        "--optimizer",
        choices=["adafactor", "adamw"],
        default=OPTIMIZER_DEFAULT,
        help="Adafactor is T5's own optimizer: its steps are relative to each "
        "weight's scale, which from-scratch training needs (see the module "
        "docstring). AdamW is what the shipped pairs were trained with; it is "
        "fine for --grow-from and fine-tuning.",
    )
    p.add_argument(
        "--warmup-steps",
        type=int,
        default=None,
        help="Linear warm-up from lr/100; None means min(500, total steps / 10).",
    )
    p.add_argument(
        "--weight-decay", type=float, default=0.01, help="AdamW only: the weight decay."
    )
    steps = p.add_mutually_exclusive_group()
    steps.add_argument(
        "--total-steps",
        type=int,
        default=None,
        help="Training steps in all; None means from --total-tokens.",
    )
    steps.add_argument(
        "--total-tokens",
        type=float,
        default=None,
        help="Target (decoder label) tokens in all, end tokens included; "
        "converted to steps with the training set's mean target length "
        "(None: 10e6 tokens, when --total-steps is not given either).",
    )
    p.add_argument(
        "--max-length",
        type=int,
        default=64,
        help="Train only on pairs whose source and target (with eos) fit in "
        "this many tokens, cut to that width (cheaper steps on CPU; the "
        "relative position buckets let the model decode longer outputs).",
    )
    p.add_argument(
        "--valid-num",
        type=int,
        default=1000,
        help="Validation pairs used for the validation loss.",
    )
    p.add_argument(
        "--time-budget-minutes",
        type=float,
        default=None,
        help="Size a fresh run to this wall time: time a few steps here, "
        "then set the step count so that the cosine schedule ends in the "
        "budget.",
    )
    p.add_argument(
        "--grow-from",
        default=None,
        help="An output directory of this script with a smaller trained model "
        "of the same width: start from it (extra layers start as identities).",
    )
    p.add_argument(
        "--seed", type=int, default=0, help="The seed of weights and batches."
    )
    args = p.parse_args()
    if args.intermediate is None:
        args.intermediate = 2 * args.hidden

    os.makedirs(args.out, exist_ok=True)
    data = np.load(os.path.join(args.data, "tokens.npz"))
    train_src, train_tgt = data[f"train_{args.source}"], data[f"train_{args.target}"]
    valid_src = data[f"valid_{args.source}"][: args.valid_num]
    valid_tgt = data[f"valid_{args.target}"][: args.valid_num]
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=os.path.join(args.data, "spm.model"))
    vocab_size = sp.get_piece_size()
    assert (sp.pad_id(), sp.eos_id()) == (0, 1), "T5 needs pad 0 and eos 1"
    if args.max_length < train_tgt.shape[1]:

        def fit_width(src, tgt):
            keep = ((src != PAD).sum(1) <= args.max_length) & (
                (tgt != PAD).sum(1) <= args.max_length
            )
            return src[keep, : args.max_length], tgt[keep, : args.max_length]

        train_src, train_tgt = fit_width(train_src, train_tgt)
        valid_src, valid_tgt = fit_width(valid_src, valid_tgt)
    num_train = len(train_tgt)
    target_lengths = (train_tgt != PAD).sum(axis=1)
    if args.total_steps is None:
        total_tokens = args.total_tokens or 10e6
        mean_tokens = float(target_lengths.mean()) * args.batch_size
        total_steps = int(math.ceil(total_tokens / mean_tokens))
    else:
        total_steps = args.total_steps

    ckpt = os.path.join(args.out, "checkpoint.keras")
    progress_path = os.path.join(args.out, "progress.json")
    optimizer_path = os.path.join(args.out, "optimizer.npz")
    if os.path.exists(ckpt):
        model = keras.models.load_model(ckpt)
        with open(progress_path) as f:
            progress = json.load(f)
        # A resumed run keeps its size (e.g. one set by --time-budget-minutes)
        # and its optimizer (runs from before --optimizer used AdamW).
        total_steps = progress["args"].get("total_steps") or total_steps
        args.optimizer = progress["args"].get("optimizer", "adamw")
        compile_model(model, args, total_steps)
        restore_optimizer(model, optimizer_path, progress["step"])
        print(f"resuming at step {progress['step']} / {total_steps}")
    else:
        keras.utils.set_random_seed(args.seed)
        model = build_model(vocab_size, args)
        if args.grow_from:
            grow_from(model, load_trained(args.grow_from))
            compile_model(model, args, 1000)
            val_x, val_y, val_w = pack(valid_src, valid_tgt)
            start_loss = keras.Model.evaluate(
                model,
                val_x,
                val_y,
                sample_weight=val_w,
                batch_size=64,
                verbose=0,
                return_dict=True,
            )["token_loss"]
            print(f"grown from {args.grow_from}: valid loss {start_loss:.4f}")
        if args.time_budget_minutes:
            total_steps = calibrate(model, train_src, train_tgt, args)
            args.total_steps = total_steps
        compile_model(model, args, total_steps)
        progress = {"step": 0, "tokens": 0, "history": [], "args": vars(args)}
    print(
        f"params {model.count_params():,}; {total_steps} steps of "
        f"{args.batch_size} pairs; {num_train:,} training pairs, "
        f"mean target length {target_lengths.mean():.1f}"
    )

    valid_x, valid_y, valid_w = pack(valid_src, valid_tgt)

    start_time = time.time()
    while progress["step"] < total_steps:
        chunk = min(args.checkpoint_steps, total_steps - progress["step"])
        idx = batch_indices(
            num_train,
            progress["step"] * args.batch_size,
            chunk * args.batch_size,
            args.seed,
        )
        x, y, w = pack(train_src[idx], train_tgt[idx])
        chunk_tokens = int(w.sum())
        t0 = time.time()
        hist = keras.Model.fit(
            model,
            x,
            y,
            sample_weight=w,
            batch_size=args.batch_size,
            epochs=1,
            shuffle=False,
            verbose=2,
        )
        elapsed = time.time() - t0
        progress["step"] += chunk
        progress["tokens"] += chunk_tokens
        val = keras.Model.evaluate(
            model,
            valid_x,
            valid_y,
            sample_weight=valid_w,
            batch_size=args.batch_size,
            verbose=0,
            return_dict=True,
        )
        record = {
            "step": progress["step"],
            "tokens": progress["tokens"],
            "train_loss": float(hist.history["token_loss"][-1]),
            "valid_loss": float(val["token_loss"]),
            "valid_perplexity": float(np.exp(val["token_loss"])),
            "valid_accuracy": float(val["accuracy"]),
            "tokens_per_second": chunk_tokens / elapsed,
        }
        if end_chunk(model, record, progress, args, start_time):
            break
    if not args.no_checkpoint:
        model.save_weights(os.path.join(args.out, "final.weights.h5"))


if __name__ == "__main__":
    main()
