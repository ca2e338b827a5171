"""Export trained checkpoints as KerasHub presets shipped in the package.

    python scripts/training/export_pair.py --data data/code \\
        --target /work/ckpt/code_target --draft /work/ckpt/code_draft \\
        --out keras_specdec/pairs/code

Each model is saved with `save_to_preset` together with a GPT-2 style
tokenizer and preprocessor, so `keras_hub.models.CausalLM.from_preset(path)`
loads it offline. The weights file is stored in float16 (half the size;
`config.json` keeps the float32 dtype policy, so the loaded model is float32,
checked after the export: see `scripts/training/float16_weights.py`). Training
progress is recorded in `<out>/training.json`.
"""

import json
import os

os.environ.setdefault("KERAS_BACKEND", "jax")

import keras  # noqa: E402
import keras_hub  # noqa: E402
from float16_weights import export_preset, exported_record  # noqa: E402  (scripts/training/ on sys.path)
from training_utils import argument_parser  # noqa: E402  (scripts/training/ is on sys.path)


def load_trained(ckpt_dir, vocab_size):
    """The trained GPT2CausalLM of a train_causal.py output directory: from
    best.weights.h5 (backbone weights of the lowest validation loss) +
    progress.json, rebuilt with dropout 0 for inference (what comes back from
    a GPU machine), or else from checkpoint.keras."""
    weights = os.path.join(ckpt_dir, "best.weights.h5")
    if not os.path.exists(weights):
        return keras.models.load_model(os.path.join(ckpt_dir, "checkpoint.keras"))
    with open(os.path.join(ckpt_dir, "progress.json")) as f:
        a = json.load(f)["args"]
    backbone = keras_hub.models.GPT2Backbone(
        vocabulary_size=vocab_size,
        num_layers=a["layers"],
        num_heads=a["heads"],
        hidden_dim=a["hidden"],
        intermediate_dim=4 * a["hidden"],
        dropout=0.0,
        max_sequence_length=a["max_sequence_length"],
    )
    backbone.load_weights(weights)
    return keras_hub.models.GPT2CausalLM(backbone=backbone, preprocessor=None)


def main():
    p = argument_parser(__doc__)
    p.add_argument(
        "--data",
        default="data/code",
        help="The corpus directory of scripts/data/prepare_code_corpus.py (its "
        "vocabulary.json and merges.txt become the presets' tokenizer).",
    )
    p.add_argument(
        "--target",
        required=True,
        help="The target's training output directory "
        "(scripts/training/train_causal.py --out).",
    )
    p.add_argument(
        "--draft",
        required=True,
        help="The draft's training output directory "
        "(scripts/training/train_causal.py --out).",
    )
    p.add_argument(
        "--out",
        default="keras_specdec/pairs/code",
        help="Where to write the pair (target/, draft/, training.json).",
    )
    p.add_argument(
        "--sequence-length",
        type=int,
        default=256,
        help="The preprocessors' sequence length.",
    )
    p.add_argument(
        "--note", default="", help="A free-text note recorded in training.json."
    )
    args = p.parse_args()

    tokenizer = keras_hub.models.GPT2Tokenizer(
        vocabulary=os.path.join(args.data, "vocabulary.json"),
        merges=os.path.join(args.data, "merges.txt"),
    )
    summary = {}
    for role in ("target", "draft"):
        ckpt_dir = getattr(args, role)
        model = load_trained(ckpt_dir, tokenizer.vocabulary_size())
        preprocessor = keras_hub.models.GPT2CausalLMPreprocessor(
            tokenizer=tokenizer, sequence_length=args.sequence_length
        )
        lm = keras_hub.models.GPT2CausalLM(
            backbone=model.backbone, preprocessor=preprocessor
        )
        weights_storage, progress = export_preset(
            lm, os.path.join(args.out, role), keras_hub.models.CausalLM, ckpt_dir
        )
        summary[role] = {
            "parameters": int(model.count_params()),
            "config": {k: progress["args"][k] for k in ("layers", "hidden", "heads")},
            "last": exported_record(ckpt_dir, progress),
            "planned_tokens": progress["args"].get("total_tokens"),
            "training_args": progress["args"],
            "weights_storage": weights_storage,
            "note": args.note,
        }
        print(role, summary[role])
    with open(os.path.join(args.out, "training.json"), "w") as f:
        json.dump(summary, f, indent=1)


if __name__ == "__main__":
    main()
