"""Greedy-decode a split of a sentence-pair corpus with a T5 pair and report
sacreBLEU, optionally also through `keras_specdec.SpeculativeSampler`.

    python scripts/comparison/eval_bleu.py --target keras_specdec/pairs/ende/target \\
        --draft keras_specdec/pairs/ende/draft --data data/ende --split test \\
        --num 2000 --batch-size 64 --speculative --gamma 4 --json-out bleu.json

``--target`` / ``--draft`` are exported preset dirs (``save_to_preset``) or
training checkpoint dirs of ``scripts/training/train_t5.py`` (holding
``checkpoint.keras``). Models run on token arrays (``preprocessor=None``):
the encoder gets ``<data>/tokens.npz``'s ``<split>_<source>`` rows
(``[ids..., eos, pad...]``), the decoder prompt is T5's start token alone (the
pad id 0, padding mask true there), generation stops at eos (id 1), and the
output is detokenized with the ``sentencepiece`` library, so no TensorFlow is
needed. With ``--speculative`` the same inputs are decoded again with the
speculative sampler, the outputs are asserted to equal the plain greedy ones,
and the sampler's statistics (acceptance rate, ...) are reported.
"""

import argparse
import json
import os
import sys

os.environ.setdefault("KERAS_BACKEND", "jax")
# train_t5.load_trained reads the training checkpoints (scripts/training/).
sys.path.insert(
    0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "training")
)

import keras  # noqa: E402
import keras_hub  # noqa: E402
import numpy as np  # noqa: E402
import sentencepiece as spm  # noqa: E402

from keras_specdec.model_utils import ignore_t5_mask_warning  # noqa: E402

ignore_t5_mask_warning()

PAD, EOS = 0, 1


def load_seq2seq(path):
    """A Seq2SeqLM without preprocessor from a checkpoint dir or preset."""
    if path.endswith(".keras"):
        model = keras.models.load_model(path)
        model.preprocessor = None
        return model
    if os.path.exists(os.path.join(path, "progress.json")):
        from train_t5 import load_trained  # scripts/training/, see above

        return load_trained(path)
    return keras_hub.models.Seq2SeqLM.from_preset(path, preprocessor=None)


def decode(model, source, batch_size, max_length):
    """Greedy token ids (without the start token) for every source row, with
    the model's current sampler; the last batch is padded to full size so
    every call hits the same compiled function."""
    outputs = []
    for start in range(0, len(source), batch_size):
        rows = source[start : start + batch_size].astype("int32")
        n = len(rows)
        if n < batch_size:
            rows = np.concatenate([rows, np.repeat(rows[:1], batch_size - n, 0)])
        decoder_ids = np.zeros((batch_size, max_length), dtype="int32")
        decoder_mask = np.zeros((batch_size, max_length), dtype=bool)
        decoder_mask[:, 0] = True  # the start token (pad id 0) is the prompt
        out = model.generate(
            {
                "encoder_token_ids": rows,
                "encoder_padding_mask": rows != PAD,
                "decoder_token_ids": decoder_ids,
                "decoder_padding_mask": decoder_mask,
            },
            stop_token_ids=(EOS,),
        )
        outputs.append(np.asarray(out["decoder_token_ids"])[:n, 1:])
    return np.concatenate(outputs)


def strip(ids):
    """Ids up to (not including) the first eos, and whether one was seen."""
    ids = list(ids)
    if EOS in ids:
        return ids[: ids.index(EOS)], True
    return ids, False


def timed_decode(model, source, args):
    from keras_specdec import analysis

    # The first batch compiles; time the rest separately.
    first, compile_seconds = analysis.timed_call(
        lambda: decode(
            model, source[: args.batch_size], args.batch_size, args.max_length
        )
    )
    rest, seconds = analysis.timed_call(
        lambda: decode(
            model, source[args.batch_size :], args.batch_size, args.max_length
        )
    )
    ids = np.concatenate([first, rest]) if len(rest) else first
    return ids, {
        "first_batch_seconds": round(compile_seconds, 3),
        "rest_seconds": round(seconds, 3),
        "rest_sentences_per_second": round((len(source) - len(first)) / seconds, 2)
        if len(rest)
        else None,
    }


def main():
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "--target",
        required=True,
        help="The target model: an exported preset directory or a training "
        "checkpoint directory of scripts/training/train_t5.py.",
    )
    p.add_argument(
        "--draft",
        default=None,
        help="The draft model (same kinds as --target); its own BLEU is "
        "reported too. Needed by --speculative.",
    )
    p.add_argument(
        "--data",
        default="data/ende",
        help="The corpus directory written by scripts/data/prepare_ende_corpus.py "
        "(spm.model, tokens.npz and the text files).",
    )
    p.add_argument("--split", default="test", help="The corpus split to decode.")
    p.add_argument("--source", default="en", help="The source language suffix.")
    p.add_argument("--target-lang", default="de", help="The reference language suffix.")
    p.add_argument(
        "--num", type=int, default=2000, help="How many sentences of the split."
    )
    p.add_argument(
        "--batch-size", type=int, default=64, help="Sentences per generate() call."
    )
    p.add_argument(
        "--max-length",
        type=int,
        default=64,
        help="The decoder length in tokens, start token included.",
    )
    p.add_argument(
        "--speculative",
        action="store_true",
        help="Also decode with the speculative sampler, check that its output "
        "equals plain greedy, and report its statistics.",
    )
    p.add_argument(
        "--gamma",
        type=int,
        default=4,
        help="Draft tokens per target call with --speculative.",
    )
    p.add_argument(
        "--json-out",
        default=None,
        help="Write the results to this JSON file (read by "
        "scripts/training/export_t5_pair.py --bleu-json).",
    )
    p.add_argument(
        "--show", type=int, default=3, help="How many example translations to print."
    )
    args = p.parse_args()
    if args.speculative and not args.draft:
        p.error("--speculative needs --draft")
    try:
        import sacrebleu
    except ImportError:
        p.error("BLEU needs sacrebleu: `pip install sacrebleu`.")

    sp = spm.SentencePieceProcessor(model_file=os.path.join(args.data, "spm.model"))
    tokens = np.load(os.path.join(args.data, "tokens.npz"))
    source = tokens[f"{args.split}_{args.source}"][: args.num]
    with open(os.path.join(args.data, f"{args.split}.{args.target_lang}")) as f:
        references = [line.rstrip("\n") for line in f][: len(source)]
    with open(os.path.join(args.data, f"{args.split}.{args.source}")) as f:
        sources = [line.rstrip("\n") for line in f][: len(source)]

    target = load_seq2seq(args.target)
    target.compile(sampler="greedy")
    ids, timing = timed_decode(target, source, args)
    stripped = [strip(row) for row in ids]
    hypotheses = [sp.decode(row) for row, _ in stripped]
    bleu = sacrebleu.corpus_bleu(hypotheses, [references])
    chrf = sacrebleu.corpus_chrf(hypotheses, [references])
    result = {
        "target": args.target,
        "split": args.split,
        "num": len(source),
        "bleu": round(bleu.score, 2),
        "bleu_signature": str(bleu),
        "chrf": round(chrf.score, 2),
        "mean_output_tokens": float(np.mean([len(r) for r, _ in stripped])),
        "without_eos": int(sum(not e for _, e in stripped)),
        "greedy": timing,
    }
    for i in range(min(args.show, len(source))):
        print(f"SRC: {sources[i]}\nREF: {references[i]}\nHYP: {hypotheses[i]}\n")

    if args.draft:
        draft = load_seq2seq(args.draft)
        result["draft"] = args.draft
        draft.compile(sampler="greedy")
        draft_ids, draft_timing = timed_decode(draft, source, args)
        draft_hyp = [sp.decode(strip(row)[0]) for row in draft_ids]
        result["draft_bleu"] = round(
            sacrebleu.corpus_bleu(draft_hyp, [references]).score, 2
        )
        result["draft_greedy"] = draft_timing
    if args.speculative:
        import keras_specdec

        sampler = keras_specdec.SpeculativeSampler(
            draft=draft, num_speculative_tokens=args.gamma
        )
        target.compile(sampler=sampler)
        spec_ids, spec_timing = timed_decode(target, source, args)
        # Identity on the generated text: up to and including the first eos
        # (tokens after a row's eos are whatever the loop left there).
        mismatched = [
            i for i, (a, b) in enumerate(zip(ids, spec_ids)) if strip(a) != strip(b)
        ]
        stats = sampler.stats()
        result["speculative"] = {
            "gamma": args.gamma,
            **spec_timing,
            "identical_to_greedy": not mismatched,
            "stats": {
                k: (float(v) if isinstance(v, (float, np.floating)) else v)
                for k, v in stats.items()
            },
            "acceptance_rate": float(stats["acceptance_rate"]),
        }
        assert not mismatched, (
            f"{len(mismatched)} speculative outputs differ from greedy, "
            f"first at row {mismatched[0]}"
        )

    print(json.dumps(result, indent=1, default=str), flush=True)
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(result, f, indent=1, default=str)


if __name__ == "__main__":
    main()
