"""CNN/DailyMail summarization with T5: target alone vs speculative decoding.

The paper's second T5 task (Table 2): inputs "summarize: <article>", a large
T5 summarizes, a small T5 drafts. Batch 1, timing after a warm-up pass,
median of --repetitions passes over --num-examples test articles; alpha from
the sampler's counters; ROUGE-L and BLEU of both outputs against the
highlights; for greedy decoding the two outputs must be identical.

    # needs the prepared TFDS dataset and the presets (Kaggle) or local copies
    python examples/t5_summarization.py --target t5_large_multi --draft t5_small_multi
    # no network: a STAND-IN task, the shipped En->De pair on its held-out pairs
    python examples/t5_summarization.py --offline-pairs

Offline: when the dataset is not prepared or a preset cannot be downloaded
the script stops at once and says how to get it (`tfds build cnn_dailymail`
elsewhere and --data-dir, or a preset saved with `save_to_preset` and its
local path).
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("KERAS_BACKEND", "jax")

import _common  # noqa: E402
import t5_translation  # noqa: E402

METRICS = ("rouge_score", "sacrebleu")  # quality metrics: import names
DATASET = "cnn_dailymail"
PREFIX = "summarize: "
STAND_IN = (
    "NOTE: --offline-pairs runs a STAND-IN task: the En->De translation pair "
    "shipped with keras_specdec on its held-out sentences. This is not "
    "summarization; it only exercises the same code path offline."
)


def online_setup(args):
    import keras_hub

    _common.check_all(
        dataset=(DATASET, args.data_dir, args.split),
        presets=[(args.target, "T5Seq2SeqLM"), (args.draft, "T5Seq2SeqLM")],
        packages=METRICS,
    )
    rows = _common.load_tfds(
        DATASET, args.data_dir, args.split, args.num_examples, ("article", "highlights")
    )
    target = keras_hub.models.Seq2SeqLM.from_preset(args.target)
    draft = keras_hub.models.Seq2SeqLM.from_preset(args.draft)
    target.preprocessor.encoder_sequence_length = args.max_input_length
    prefix = PREFIX if args.prefix is None else args.prefix
    return target, draft, rows, prefix, f"{DATASET} {args.split}"


def main(argv=None):
    parser = _common.argument_parser(__doc__)
    _common.add_common_flags(parser, "t5_large_multi", "t5_small_multi", 128)
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
        default=512,
        help="The encoder length in tokens (with presets).",
    )
    parser.add_argument(
        "--prefix",
        default=None,
        help=f"The input prefix; None means {PREFIX!r} with presets and the "
        "pair's own prefix with --offline-pairs.",
    )
    args = parser.parse_args(argv)
    _common.ignore_t5_mask_warning()
    if args.offline_pairs:
        _common.check_all(packages=METRICS)

    if args.offline_pairs:
        print(STAND_IN)
        target, draft, rows, prefix, source = t5_translation.offline_setup(args)
        title = f"STAND-IN task (not summarization): En->De, {source}"
    else:
        target, draft, rows, prefix, source = online_setup(args)
        title = f"Summarization, {source}"
    rows = rows[: args.num_examples]
    inputs = [prefix + text for text, _ in rows]
    references = [reference for _, reference in rows]

    result = _common.compare(target, draft, inputs, args)
    quality = {
        "ROUGE-L F1": (
            _common.rouge_l(result["plain"], references),
            _common.rouge_l(result["speculative"], references),
        ),
        "BLEU (sacrebleu)": (
            _common.bleu(result["plain"], references),
            _common.bleu(result["speculative"], references),
        ),
    }
    result["quality"] = quality
    _common.report(
        result,
        f"{title}, {len(rows)} inputs, gamma {args.gamma}, "
        f"temperature {args.temperature}",
        quality=quality,
        sources=[text[:200] for text in inputs],
    )
    if args.offline_pairs:
        print(STAND_IN)
    return result


if __name__ == "__main__":
    main()
