"""WMT14 English->German with T5: target alone vs speculative decoding.

The paper's first experiment (Leviathan et al., 2023, Table 2): a large T5
translates, a small T5 drafts. Batch 1, timing after a warm-up pass, median
of --repetitions passes over --num-examples test sentences; alpha from the
sampler's counters; BLEU (sacrebleu) of both outputs; for greedy decoding
the two outputs must be identical.

    # needs the prepared TFDS dataset and the presets (Kaggle) or local copies
    python examples/t5_translation.py --target t5_large_multi --draft t5_small_multi
    python examples/t5_translation.py --temperature 1.0 --gamma 3
    # no network: the En->De pair shipped with keras_specdec, held-out pairs
    python examples/t5_translation.py --offline-pairs

Offline: when the dataset is not prepared or a preset cannot be downloaded
the script stops at once and says how to get it (`tfds build
wmt14_translate/de-en` elsewhere and --data-dir, or a preset saved with
`save_to_preset` and its local path).
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("KERAS_BACKEND", "jax")

import _common  # noqa: E402

METRICS = ("sacrebleu",)  # quality metrics: import names
DATASET = "wmt14_translate/de-en"
PREFIX = "translate English to German: "
# Used when the shipped pair has no held-out files.
FALLBACK_PAIRS = [
    ("The house is small.", "Das Haus ist klein."),
    ("I am reading a book.", "Ich lese ein Buch."),
    ("Where is the station?", "Wo ist der Bahnhof?"),
    ("The weather is nice today.", "Das Wetter ist heute schön."),
]


def offline_setup(args):
    import keras_specdec

    name = args.pair or "ende"
    try:
        keras_specdec.pairs.path(name, "target")
    except ValueError as error:
        _common.fail([f"- --offline-pairs: {error}"], offline_hint=False)
    target, draft = keras_specdec.pairs.load(name)
    try:
        rows = keras_specdec.pairs.held_out_pairs(name, "test", "en", "de")
    except FileNotFoundError:
        rows = FALLBACK_PAIRS
    prefix = args.prefix
    if prefix is None:
        try:
            prefix = keras_specdec.pairs.training_summary(name).get("source_prefix", "")
        except FileNotFoundError:
            prefix = ""
    return target, draft, rows, prefix, f"shipped pair {name!r} (held-out pairs)"


def online_setup(args):
    import keras_hub

    _common.check_all(
        dataset=(DATASET, args.data_dir, args.split),
        presets=[(args.target, "T5Seq2SeqLM"), (args.draft, "T5Seq2SeqLM")],
        packages=METRICS,
    )
    rows = _common.load_tfds(
        DATASET, args.data_dir, args.split, args.num_examples, ("en", "de")
    )
    target = keras_hub.models.Seq2SeqLM.from_preset(args.target)
    draft = keras_hub.models.Seq2SeqLM.from_preset(args.draft)
    target.preprocessor.encoder_sequence_length = args.max_input_length
    prefix = PREFIX if args.prefix is None else args.prefix
    return target, draft, rows, prefix, f"{DATASET} {args.split}"


def main(argv=None):
    parser = _common.argument_parser(__doc__)
    _common.add_common_flags(parser, "t5_large_multi", "t5_small_multi", 64)
    parser.add_argument(
        "--data-dir",
        default=None,
        help="The TFDS data directory; None means TFDS_DATA_DIR or "
        "~/tensorflow_datasets.",
    )
    parser.add_argument("--split", default="test", help="The TFDS split to use.")
    parser.add_argument(
        "--max-input-length",
        type=int,
        default=128,
        help="The encoder length in tokens (with presets).",
    )
    parser.add_argument(
        "--prefix",
        default=None,
        help=f"The source prefix; None means {PREFIX!r} with presets and the "
        "pair's own prefix with --offline-pairs.",
    )
    args = parser.parse_args(argv)
    _common.ignore_t5_mask_warning()
    if args.offline_pairs:
        _common.check_all(packages=METRICS)

    setup = offline_setup if args.offline_pairs else online_setup
    target, draft, rows, prefix, source = setup(args)
    rows = rows[: args.num_examples]
    inputs = [prefix + en for en, _ in rows]
    references = [de for _, de in rows]

    result = _common.compare(target, draft, inputs, args)
    result["bleu"] = (
        _common.bleu(result["plain"], references),
        _common.bleu(result["speculative"], references),
    )
    _common.report(
        result,
        f"English->German, {source}, {len(rows)} sentences, gamma {args.gamma}, "
        f"temperature {args.temperature}",
        quality={"BLEU (sacrebleu)": result["bleu"]},
        sources=inputs,
    )
    return result


if __name__ == "__main__":
    main()
