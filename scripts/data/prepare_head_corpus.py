"""Tokenise a training subset of the code corpus for the code pair's draft head.

    python scripts/data/prepare_head_corpus.py --out data/code_head --tokens 6000000

The shipped code pair was trained on ``data/code_large`` (built by
`scripts/prepare_code_corpus.py`, not in git). This rebuilds the part the
head needs without retraining a tokenizer: the same source files (the CPython
standard library plus the installed keras, keras_hub, jax, numpy, scipy and
matplotlib sources), tokenised with the SHIPPED target's tokenizer
(``keras_specdec/pairs/code/target/assets/tokenizer``), and the same held-out
files: ``data/code``'s validation split is reproduced (its file list, shuffled
with seed 0, first 2%), and every file a benchmark prompt came from
(``keras_specdec/pairs/code/prompts.json``) is excluded from training whether
or not the reproduction matches. Training files are taken in a seeded random
order until ``--tokens`` tokens; validation files until ``--valid-tokens``.

Writes ``train.npy`` / ``valid.npy`` (uint16 ids, files joined by
<|endoftext|>) and ``sources.json`` into ``--out``.
"""

import argparse
import json
import os
import random
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from prepare_code_corpus import corpus_files, read_clean  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PAIR = os.path.join(ROOT, "keras_specdec", "pairs", "code")


def held_out_files(valid_fraction=0.02, seed=0):
    """data/code's validation files (prepare_code_corpus.py's default split)
    plus every prompt source of the shipped code pair."""
    pairs = corpus_files(["keras", "keras_hub", "jax"])
    files = [os.path.relpath(f, root) for root, f in pairs]
    order = list(range(len(files)))
    random.Random(seed).shuffle(order)
    valid = {files[i] for i in order[: max(1, int(len(files) * valid_fraction))]}
    with open(os.path.join(PAIR, "prompts.json")) as f:
        prompt_sources = {entry["source"] for entry in json.load(f)}
    missing = sorted(prompt_sources - valid)
    return valid | prompt_sources, missing


def main():
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--out", default="data/code_head", help="Directory to write to.")
    p.add_argument(
        "--tokens",
        type=int,
        default=6_000_000,
        help="Stop adding training files once this many tokens are collected.",
    )
    p.add_argument(
        "--valid-tokens",
        type=int,
        default=300_000,
        help="Stop adding validation files once this many tokens are collected.",
    )
    p.add_argument(
        "--packages",
        nargs="*",
        default=["keras", "keras_hub", "jax", "numpy", "scipy", "matplotlib"],
        help="Installed packages whose source joins the standard library's.",
    )
    p.add_argument("--seed", type=int, default=0, help="Seed of the file order.")
    args = p.parse_args()

    os.environ.setdefault("KERAS_BACKEND", "jax")
    import keras_hub

    held_out, missing = held_out_files()
    if missing:
        print(
            f"note: {len(missing)} prompt sources are not in the reproduced "
            f"validation split (excluded anyway): {missing}"
        )
    pairs = corpus_files(args.packages)
    names = [os.path.relpath(f, root) for root, f in pairs]
    train_ids = [i for i, n in enumerate(names) if n not in held_out]
    valid_ids = [i for i, n in enumerate(names) if n in held_out]
    random.Random(args.seed).shuffle(train_ids)
    random.Random(args.seed + 1).shuffle(valid_ids)
    assets = os.path.join(PAIR, "target", "assets", "tokenizer")
    tokenizer = keras_hub.models.GPT2Tokenizer(
        vocabulary=os.path.join(assets, "vocabulary.json"),
        merges=os.path.join(assets, "merges.txt"),
    )
    end_id = tokenizer.token_to_id("<|endoftext|>")

    def encode(ids, budget):
        out, used = [], []
        for start in range(0, len(ids), 32):
            chunk = ids[start : start + 32]
            for i, tokens in zip(
                chunk, tokenizer([read_clean(pairs[i][1]) for i in chunk])
            ):
                out.extend(np.asarray(tokens).tolist())
                out.append(end_id)
                used.append(names[i])
            print(f"  {len(out):,} tokens", flush=True)
            if len(out) >= budget:
                break
        return np.asarray(out, dtype=np.uint16), used

    os.makedirs(args.out, exist_ok=True)
    valid, valid_used = encode(valid_ids, args.valid_tokens)
    np.save(os.path.join(args.out, "valid.npy"), valid)
    train, train_used = encode(train_ids, args.tokens)
    np.save(os.path.join(args.out, "train.npy"), train)
    assert not set(train_used) & held_out
    with open(os.path.join(args.out, "sources.json"), "w") as f:
        json.dump(
            {
                "python": sys.version,
                "train_files": train_used,
                "valid_files": valid_used,
                "train_tokens": int(train.size),
                "valid_tokens": int(valid.size),
                "prompt_sources_outside_reproduced_split": missing,
            },
            f,
            indent=1,
        )
    print(f"train {train.size:,} tokens, valid {valid.size:,} tokens")


if __name__ == "__main__":
    main()
