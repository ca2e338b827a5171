"""Export trained T5 checkpoints as KerasHub presets shipped in the package.

    python scripts/training/export_t5_pair.py --data data/ende \\
        --target /work/ckpt/ende_target --draft /work/ckpt/ende_draft \\
        --out keras_specdec/pairs/ende --bleu-json bleu.json

``--target`` / ``--draft`` are `scripts/training/train_t5.py` output dirs
(``checkpoint.keras`` + ``progress.json``). Each backbone is saved with
`save_to_preset` together with a SentencePiece `T5Tokenizer` (``spm.model``)
and a `T5Seq2SeqLMPreprocessor` (encoder and decoder sequence length 64), so
`keras_hub.models.Seq2SeqLM.from_preset(path)` loads it offline and
``generate({"encoder_text": [...], "decoder_text": [""]})`` translates. The
weights file is stored in float16 (half the size; `config.json` keeps the
float32 dtype policy, so the loaded model is float32, checked after the
export: see `scripts/training/float16_weights.py`). The
first ``--held-out`` lines of the test split are copied to
``<out>/test.{en,de}`` (read by `keras_specdec.pairs.held_out_pairs`), and
training progress (plus BLEU from ``scripts/comparison/eval_bleu.py --json-out``) is
recorded in ``<out>/training.json``.
"""

import json
import os

os.environ.setdefault("KERAS_BACKEND", "jax")

import keras_hub  # noqa: E402

CONFIG_KEYS = ("layers", "hidden", "heads", "intermediate", "key_value_dim", "dropout")


from float16_weights import export_preset, exported_record  # noqa: E402  (scripts/training/ on sys.path)
from train_t5 import load_trained  # noqa: E402  (also silences T5's mask warning)
from training_utils import argument_parser  # noqa: E402  (scripts/training/ is on sys.path)


def main():
    p = argument_parser(__doc__)
    p.add_argument(
        "--data",
        default="data/ende",
        help="The corpus directory of scripts/data/prepare_ende_corpus.py (spm.model "
        "and the test split's text files).",
    )
    p.add_argument(
        "--target",
        required=True,
        help="The target's training output directory "
        "(scripts/training/train_t5.py --out).",
    )
    p.add_argument(
        "--draft",
        required=True,
        help="The draft's training output directory "
        "(scripts/training/train_t5.py --out).",
    )
    p.add_argument(
        "--out",
        default="keras_specdec/pairs/ende",
        help="Where to write the pair (target/, draft/, test.*, training.json).",
    )
    p.add_argument(
        "--sequence-length",
        type=int,
        default=64,
        help="The preprocessors' encoder and decoder sequence length.",
    )
    p.add_argument(
        "--bleu-json",
        default=None,
        help="A results file of scripts/comparison/eval_bleu.py --json-out to "
        "record in training.json.",
    )
    p.add_argument(
        "--held-out",
        type=int,
        default=2000,
        help="How many test lines to copy next to the pair (0 copies none).",
    )
    p.add_argument("--source", default="en", help="The source language suffix.")
    p.add_argument("--target-lang", default="de", help="The target language suffix.")
    p.add_argument(
        "--note", default="", help="A free-text note recorded in training.json."
    )
    args = p.parse_args()

    tokenizer = keras_hub.models.T5Tokenizer(proto=os.path.join(args.data, "spm.model"))
    assert (tokenizer.pad_token_id, tokenizer.end_token_id) == (0, 1)
    os.makedirs(args.out, exist_ok=True)
    summary = {}
    for role in ("target", "draft"):
        ckpt_dir = getattr(args, role)
        model = load_trained(ckpt_dir)
        preprocessor = keras_hub.models.T5Seq2SeqLMPreprocessor(
            tokenizer=tokenizer,
            encoder_sequence_length=args.sequence_length,
            decoder_sequence_length=args.sequence_length,
        )
        lm = keras_hub.models.T5Seq2SeqLM(
            backbone=model.backbone, preprocessor=preprocessor
        )
        weights_storage, progress = export_preset(
            lm, os.path.join(args.out, role), keras_hub.models.Seq2SeqLM, ckpt_dir
        )
        summary[role] = {
            "parameters": int(model.count_params()),
            "config": {k: progress["args"].get(k) for k in CONFIG_KEYS},
            "last": exported_record(ckpt_dir, progress),
            "weights_storage": weights_storage,
        }
        print(role, summary[role])
    if args.note:
        summary["note"] = args.note
    if args.bleu_json:
        with open(args.bleu_json) as f:
            summary["bleu"] = json.load(f)
    with open(os.path.join(args.out, "training.json"), "w") as f:
        json.dump(summary, f, indent=1)

    if args.held_out:
        for lang in (args.source, args.target_lang):
            with open(os.path.join(args.data, f"test.{lang}"), encoding="utf-8") as f:
                lines = [line for _, line in zip(range(args.held_out), f)]
            out_file = os.path.join(args.out, f"test.{lang}")
            with open(out_file, "w", encoding="utf-8") as f:
                f.writelines(lines)

    # Check: the presets load with the ordinary KerasHub call and translate.
    with open(os.path.join(args.data, f"test.{args.source}"), encoding="utf-8") as f:
        sources = [f.readline().rstrip("\n") for _ in range(2)]
    for role in ("target", "draft"):
        lm = keras_hub.models.Seq2SeqLM.from_preset(os.path.join(args.out, role))
        lm.compile(sampler="greedy")
        outputs = lm.generate({"encoder_text": sources, "decoder_text": [""] * 2})
        for source, output in zip(sources, outputs):
            print(f"{role}: {source!r} -> {output!r}")


if __name__ == "__main__":
    main()
