"""Write the code pair's benchmark prompts from its held-out source files.

    python scripts/data/make_code_prompts.py [--data data/code_large] \
        [--out keras_specdec/pairs/code/prompts.json] [--every 4]

For each validation file of the code corpus (never trained on; read from this
machine's stdlib / site-packages) the first function definition whose first
four lines have no docstring and 60-260 characters becomes a candidate
prompt; every `--every`-th candidate, in the corpus' file order, is kept. The
rule is fixed in advance and does not look at what the models generate, so
the prompts are not picked for high acceptance. Sources: the CPython standard
library (PSF licence) and keras / keras_hub / jax (Apache 2.0); each prompt
is a few lines, recorded with its file.
"""

import argparse
import json
import os
import re
import sysconfig


def candidates(valid_files):
    roots = [sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["purelib"]]
    for name in valid_files:
        paths = [os.path.join(r, name) for r in roots]
        path = next((p for p in paths if os.path.exists(p)), None)
        if path is None:
            continue
        with open(path, encoding="utf-8") as f:
            source = f.read()
        for match in re.finditer(r"\n(    )?def \w+\(.*\n", source):
            text = "\n".join(source[match.start() + 1 :].split("\n")[:4]) + "\n"
            if 60 < len(text) < 260 and '"""' not in text and "'''" not in text:
                yield name, text
                break


def main():
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "--data",
        default="data/code_large",
        help="The corpus directory of scripts/data/prepare_code_corpus.py whose "
        "sources.json lists the validation files.",
    )
    p.add_argument(
        "--out",
        default="keras_specdec/pairs/code/prompts.json",
        help="The prompts file to write.",
    )
    p.add_argument(
        "--every",
        type=int,
        default=4,
        help="Keep every N-th candidate prompt, in the corpus' file order.",
    )
    args = p.parse_args()
    with open(os.path.join(args.data, "sources.json")) as f:
        valid_files = json.load(f)["valid_files"]
    found = list(candidates(valid_files))
    chosen = found[:: args.every]
    with open(args.out, "w") as f:
        json.dump(
            [{"source": name, "prompt": text} for name, text in chosen], f, indent=1
        )
    print(f"{len(chosen)} of {len(found)} held-out prompts -> {args.out}")


if __name__ == "__main__":
    main()
