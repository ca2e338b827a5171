"""Controlled probe of the from-scratch T5 stall (train_t5.py): train the
same small T5 for a few hundred steps under variants of its setup and print
the training loss (exact mean over real target tokens) every few steps next
to the unigram loss (the entropy of the training targets' token frequencies:
a model that ignores its inputs sits there).

Variants (comma-separated ``--variants``):
    default     train_t5.py's model and optimizer as they were
    emb_small   token embedding initialised with std hidden_dim**-0.5 (not 1.0)
    no_wd       AdamW without weight decay
    warmup      linear warm-up over a quarter of the steps
    adafactor   Adafactor (T5's optimizer: steps relative to each weight's RMS)
    fixed       train_t5.py's current defaults (Adafactor, see its docstring)

Example (2 CPU cores, about a minute per 100 steps and variant):
    python scripts/t5_stall_probe.py --data data/ende --steps 300 \\
        --layers 3 --hidden 192 --heads 4 --variants default,fixed
"""

import argparse
import json
import os
import time

os.environ.setdefault("KERAS_BACKEND", "jax")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import train_t5  # noqa: E402  (scripts/ is on sys.path)


def unigram_loss(targets):
    ids = targets[targets != train_t5.PAD]
    counts = np.bincount(ids).astype("float64")
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


def rms(variable):
    return float(np.sqrt(np.mean(np.square(keras.ops.convert_to_numpy(variable)))))


def attention_score_std(model, x):
    """Std of q.k (before the position bias) of the first encoder and
    decoder self-attention layers on `x`: ~1 at initialisation (T5's query
    init compensates for the missing 1/sqrt(d_kv)); large means a saturated
    softmax that passes almost no gradient."""
    backbone = model.backbone
    out = {}
    for stack, ids in (
        ("encoder", "encoder_token_ids"),
        ("decoder", "decoder_token_ids"),
    ):
        layer = backbone.get_layer(f"transformer_{stack}_layer_0")
        h = layer.self_attention_layer_norm(backbone.token_embedding(x[ids]))
        attn = layer.self_attention
        q = attn.query_projector(h)
        k = attn.key_projector(h)
        shape = (q.shape[0], q.shape[1], attn.num_heads, attn.key_value_dim)
        q, k = keras.ops.reshape(q, shape), keras.ops.reshape(k, shape)
        scores = keras.ops.einsum("bqnd,bknd->bnqk", q, k)
        out[stack] = round(float(keras.ops.std(scores)), 2)
    return out


def main():
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "--data",
        default="data/ende",
        help="Folder with tokens.npz and spm.model from "
        "scripts/prepare_ende_corpus.py.",
    )
    p.add_argument(
        "--layers", type=int, default=3, help="Encoder and decoder layers each."
    )
    p.add_argument(
        "--hidden",
        type=int,
        default=192,
        help="Hidden size (the feed-forward size is twice this).",
    )
    p.add_argument("--heads", type=int, default=4, help="Attention heads.")
    p.add_argument(
        "--batch-size", type=int, default=64, help="Sentence pairs per step."
    )
    p.add_argument(
        "--max-length",
        type=int,
        default=32,
        help="Keep only pairs whose source and target fit in this many tokens.",
    )
    p.add_argument(
        "--lr",
        type=float,
        default=1e-3,
        help="Peak learning rate of the warm-up plus cosine-decay schedule.",
    )
    p.add_argument("--steps", type=int, default=300, help="Training steps per variant.")
    p.add_argument(
        "--log-every",
        type=int,
        default=25,
        help="Print the training loss every this many steps.",
    )
    p.add_argument(
        "--variants",
        default="default,fixed",
        help="Comma-separated variants to train, each from the same seed: "
        "default, emb_small, no_wd, warmup, adafactor, fixed.",
    )
    p.add_argument(
        "--out",
        default=None,
        help="Write the loss curves, query growth and attention-score stds "
        "as JSON to this file.",
    )
    args = p.parse_args()
    data = np.load(os.path.join(args.data, "tokens.npz"))
    src, tgt = data["train_en"], data["train_de"]
    keep = ((src != 0).sum(1) <= args.max_length) & (
        (tgt != 0).sum(1) <= args.max_length
    )
    src, tgt = src[keep, : args.max_length], tgt[keep, : args.max_length]
    vocab_size = int(max(src.max(), tgt.max())) + 1
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=os.path.join(args.data, "spm.model"))
    vocab_size = sp.get_piece_size()
    n = args.steps * args.batch_size
    rng = np.random.default_rng(0)
    idx = rng.permutation(len(tgt))[:n]
    x, y, w = train_t5.pack(src[idx], tgt[idx])
    print(f"unigram loss of the targets: {unigram_loss(tgt[idx]):.3f}", flush=True)
    curves = {}
    for variant in args.variants.split(","):
        config = argparse.Namespace(
            layers=args.layers,
            hidden=args.hidden,
            heads=args.heads,
            intermediate=2 * args.hidden,
            key_value_dim=None,
            dropout=0.0,
            lr=args.lr,
            warmup_steps=None,
            weight_decay=0.01,
            embedding_std=None,
            optimizer="adamw",
        )
        if variant == "fixed":
            config.optimizer = train_t5.OPTIMIZER_DEFAULT
        else:
            config.embedding_std = 1.0  # KerasHub's default
            config.warmup_steps = min(500, args.steps // 10)
        if variant == "emb_small":
            config.embedding_std = args.hidden**-0.5
        if variant == "no_wd":
            config.weight_decay = 0.0
        if variant == "warmup":
            config.warmup_steps = args.steps // 4
        if variant == "adafactor":
            config.optimizer = "adafactor"
        keras.utils.set_random_seed(0)
        model = train_t5.build_model(vocab_size, config)
        train_t5.compile_model(model, config, args.steps)
        initial = {v.path: rms(v) for v in model.weights if "query" in v.path}
        losses = []
        t0 = time.time()
        for start in range(0, args.steps, args.log_every):
            part = slice(
                start * args.batch_size, (start + args.log_every) * args.batch_size
            )
            hist = keras.Model.fit(
                model,
                {k: v[part] for k, v in x.items()},
                y[part],
                sample_weight=w[part],
                batch_size=args.batch_size,
                shuffle=False,
                verbose=0,
            )
            losses.append(float(hist.history["token_loss"][-1]))
            print(
                f"{variant:10s} step {start + args.log_every:4d} "
                f"loss {losses[-1]:.3f} ({time.time() - t0:.0f} s)",
                flush=True,
            )
        growth = {
            path: rms(v) / initial[path]
            for v in model.weights
            for path in [v.path]
            if path in initial
        }
        scores = attention_score_std(model, {k: v[:64] for k, v in x.items()})
        print(
            f"{variant:10s} query-kernel RMS / initial: "
            f"{min(growth.values()):.1f}..{max(growth.values()):.1f}; "
            f"std of layer-0 self-attention scores: {scores}",
            flush=True,
        )
        curves[variant] = {"loss": losses, "query_growth": growth, "scores": scores}
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"args": vars(args), "curves": curves}, f, indent=1)


if __name__ == "__main__":
    main()
