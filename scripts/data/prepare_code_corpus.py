"""Build the Python-code corpus and BPE tokenizer for the shipped causal pair.

Sources (nothing is downloaded): the CPython standard library that ships with
every Python install (PSF licence) and the installed source of this project's
own dependencies keras, keras_hub and jax (Apache-2.0), without test suites.
The exact versions used are recorded in sources.json.

Usage:
    python scripts/data/prepare_code_corpus.py --out data/code

A bigger corpus with the SAME tokenizer and validation files (so shipped
models keep working and validation losses stay comparable):
    python scripts/data/prepare_code_corpus.py --out data/code_large \
        --packages keras keras_hub jax numpy scipy matplotlib \
        --tokenizer-from data/code

Writes into ``--out``:
    vocabulary.json, merges.txt   byte-level BPE in KerasHub GPT2 format
    train.npy, valid.npy          uint16 token ids, files joined by <|endoftext|>
    sources.json                  the files used and the Python version
"""

import argparse
import json
import os
import random
import sys
import sysconfig

import numpy as np

PAD_TOKEN = "<pad>"  # id 0: KerasHub's GPT-2 tokenizer pads with id 0
END_TOKEN = "<|endoftext|>"  # id 1: must differ from the padding id
SKIP_DIRS = {
    "test",
    "tests",
    "idle_test",
    "site-packages",
    "__pycache__",
    "lib2to3",
    "ensurepip",
    "turtledemo",
    "tkinter",
}


def python_files(root):
    files = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(
            d for d in dirnames if d not in SKIP_DIRS and not d.startswith(".")
        )
        for name in sorted(filenames):
            if (
                name.endswith(".py")
                and not name.startswith("test_")
                and not name.endswith("_test.py")
            ):
                files.append(os.path.join(dirpath, name))
    return files


def corpus_files(packages):
    """(root, path) pairs: the stdlib, then each named installed package."""
    stdlib = sysconfig.get_paths()["stdlib"]
    pairs = [(stdlib, f) for f in python_files(stdlib)]
    for name in packages:
        module = __import__(name)
        package_dir = os.path.dirname(module.__file__)
        root = os.path.dirname(package_dir)
        pairs += [(root, f) for f in python_files(package_dir)]
    return pairs


def read_clean(path):
    with open(path, encoding="utf-8", errors="replace") as f:
        text = f.read()
    # Tabs to spaces, strip trailing whitespace: fewer rare tokens.
    lines = [line.rstrip().replace("\t", "    ") for line in text.splitlines()]
    return "\n".join(lines).strip() + "\n"


def train_tokenizer(args, train_texts):
    """Train the byte-level BPE on the training files; returns the end id."""
    from tokenizers import ByteLevelBPETokenizer

    tokenizer = ByteLevelBPETokenizer(add_prefix_space=False)
    tokenizer.train_from_iterator(
        iter(train_texts),
        vocab_size=args.vocab_size,
        min_frequency=2,
        special_tokens=[PAD_TOKEN, END_TOKEN],
        show_progress=True,
    )
    tokenizer.save_model(args.out)
    os.replace(
        os.path.join(args.out, "vocab.json"), os.path.join(args.out, "vocabulary.json")
    )
    end_id = tokenizer.token_to_id(END_TOKEN)
    assert tokenizer.token_to_id(PAD_TOKEN) == 0 and end_id == 1
    return end_id


def main():
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--out", default="data/code", help="The directory to write the corpus to."
    )
    parser.add_argument(
        "--vocab-size",
        type=int,
        default=4096,
        help="The BPE vocabulary size (ignored with --tokenizer-from).",
    )
    parser.add_argument(
        "--valid-fraction",
        type=float,
        default=0.02,
        help="The fraction of files held out for validation.",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="The seed of the file shuffle."
    )
    parser.add_argument(
        "--packages",
        nargs="*",
        default=["keras", "keras_hub", "jax"],
        help="Installed packages whose source joins the standard library's.",
    )
    parser.add_argument(
        "--tokenizer-from",
        default=None,
        help="Reuse vocabulary.json/merges.txt and the validation files of an "
        "earlier --out directory instead of training a new tokenizer.",
    )
    args = parser.parse_args()

    os.makedirs(args.out, exist_ok=True)
    pairs = corpus_files(args.packages)
    files = [os.path.relpath(f, root) for root, f in pairs]
    texts = [read_clean(f) for _, f in pairs]
    if args.tokenizer_from:
        import shutil

        for name in ("vocabulary.json", "merges.txt"):
            if os.path.abspath(args.tokenizer_from) != os.path.abspath(args.out):
                shutil.copy(os.path.join(args.tokenizer_from, name), args.out)
        with open(os.path.join(args.tokenizer_from, "sources.json")) as f:
            old_valid = set(json.load(f)["valid_files"])
        valid_ids = [i for i, name in enumerate(files) if name in old_valid]
        train_ids = [i for i, name in enumerate(files) if name not in old_valid]
        random.Random(args.seed).shuffle(train_ids)
        with open(os.path.join(args.out, "vocabulary.json")) as f:
            vocabulary = json.load(f)
        end_id = vocabulary[END_TOKEN]
        assert vocabulary[PAD_TOKEN] == 0 and end_id == 1
    else:
        order = list(range(len(files)))
        random.Random(args.seed).shuffle(order)
        num_valid = max(1, int(len(files) * args.valid_fraction))
        valid_ids, train_ids = order[:num_valid], order[num_valid:]
        end_id = train_tokenizer(args, [texts[i] for i in train_ids])

    # Encode with the tokenizer inference uses (KerasHub's GPT-2 tokenizer,
    # which splits whitespace runs slightly differently from `tokenizers`).
    os.environ.setdefault("KERAS_BACKEND", "jax")
    import keras_hub

    keras_tokenizer = keras_hub.models.GPT2Tokenizer(
        vocabulary=os.path.join(args.out, "vocabulary.json"),
        merges=os.path.join(args.out, "merges.txt"),
    )

    def encode(ids):
        out = []
        for start in range(0, len(ids), 64):
            batch = [texts[i] for i in ids[start : start + 64]]
            for tokens in keras_tokenizer(batch):
                out.extend(np.asarray(tokens).tolist())
                out.append(end_id)
        return np.asarray(out, dtype=np.uint16)

    train, valid = encode(train_ids), encode(valid_ids)
    np.save(os.path.join(args.out, "train.npy"), train)
    np.save(os.path.join(args.out, "valid.npy"), valid)
    versions = {"python": sys.version}
    for name in args.packages:
        versions[name] = getattr(__import__(name), "__version__", "unknown")
    with open(os.path.join(args.out, "sources.json"), "w") as f:
        json.dump(
            {
                "versions": versions,
                "licences": {
                    "stdlib": "PSF-2.0",
                    "keras": "Apache-2.0",
                    "keras_hub": "Apache-2.0",
                    "jax": "Apache-2.0",
                    "numpy": "BSD-3-Clause",
                    "scipy": "BSD-3-Clause",
                    "matplotlib": "PSF-based matplotlib licence",
                },
                "train_files": [files[i] for i in train_ids],
                "valid_files": [files[i] for i in valid_ids],
                "train_tokens": int(train.size),
                "valid_tokens": int(valid.size),
            },
            f,
            indent=1,
        )
    print(
        f"{len(files)} files, train {train.size:,} tokens, "
        f"valid {valid.size:,} tokens, end id {end_id}"
    )


if __name__ == "__main__":
    main()
