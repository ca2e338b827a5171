"""Prompt lookup in the encoder's input: tokens per target call and walltime
of `PromptLookupDraft(search_encoder=True / False)` on a copy-with-edits T5
trained here, and on the shipped `ende` pair.

The copy task (`build_task`): snippets of Python standard library source
(consecutive non-blank lines, 12 to `--max-length` - 12 tokens; files
sorted, every 10th file held out, so test snippets come from files never
trained on), tokenized with a vocabulary built from the training files (the
`--vocabulary` most frequent word / number / punctuation tokens, a leading space kept as
part of the token, plus every single character with and without a leading
space, so any line is spelled without an unknown token: rare words fall back
to characters). The target is the source with three deterministic edits:
every `self` renamed to `this`; every line-final `:` dropped; the first
`NAME, NAME` pair (two plain identifiers separated by a comma) swapped. A
small `T5Seq2SeqLM` (`scripts/training/train_t5.py`'s `build_model`,
Adafactor, `preprocessor=None`) is trained on it for `--steps` steps; the
weights are cached under `--work-dir` so reruns skip training, and a run
with more `--steps` continues the cached model of the same settings with the
most steps (the remaining steps on a fresh warm-up + cosine schedule).

Measurement (`measure`): batch 1, each held-out source one `generate()`
call, stopping at the end token, decoder buffer `--max-length`. One target
instance per configuration, compiled first (a first pass per configuration,
excluded), then all timed in turn in each repetition, starting at a
different configuration each time (as `keras_specdec.measure.median_seconds`
does; one timed call = a pass over the held-out sources), medians compared.
At T=0 every configuration does the same work (its output up to the end
token is checked against the target's own greedy output), so the speedup is
the ratio of seconds per pass; at T=1 the configurations sample different
outputs of different lengths, so compare the speedup per new token (median
over passes of seconds / output tokens). Tokens per target call and
acceptance are `sampler.stats()` summed over the timed passes; "output
tokens" per target call counts the outputs' tokens instead (a round that
accepts the end token and tokens after it counts those in `emitted_tokens`,
but the output ends at the end token). Also printed: how much of each
output the source holds (the share of output tokens whose preceding 2
tokens and itself appear as a 3-gram in the source), and for the copy task
how often greedy output equals the edited reference.

The `ende` pair (`--ende`): the shipped En->De T5 target with the same lookup
drafts on the held-out English sources (`keras_specdec.pairs.
benchmark_prompts("ende")`, sentences of 8+ words), tokenized by the pair's
preprocessor and fed as token ids.

Commands (the results in docs/benchmarks/encoder-lookup.md; the second
continues the first's model, the third and fourth only load it):

    export KERAS_BACKEND=jax
    S=scripts/comparison/encoder_lookup_benchmark.py
    nice -n 15 python $S --steps 2500 --train-only
    nice -n 15 python $S --steps 5000 --train-only
    nice -n 15 python $S --steps 5000 --temperatures 0 1 --out copy.json
    nice -n 15 python $S --skip-copy --ende --temperatures 0 1 --out ende.json

`--skip-copy` runs only the `ende` part; `--train-only` stops after training.
"""

import argparse
import collections
import json
import os
import re
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "jax")
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "scripts", "training"))

PAD, EOS = 0, 1  # T5's pad (also its decoder start token) and end ids
SPECIALS = ["<pad>", "</s>", "<unk>"]
# A word, a number, one punctuation character (each with an optional leading
# space), a run of spaces (indentation), or a newline.
TOKEN = re.compile(r" ?[A-Za-z_][A-Za-z_0-9]*| ?[0-9]+| ?[^\sA-Za-z_0-9]| +|\n")
IDENTIFIER = re.compile(r" ?[A-Za-z_][A-Za-z_0-9]*")
KEYWORDS = {
    "False", "None", "True", "and", "as", "assert", "async", "await", "break",
    "class", "continue", "def", "del", "elif", "else", "except", "finally",
    "for", "from", "global", "if", "import", "in", "is", "lambda", "nonlocal",
    "not", "or", "pass", "raise", "return", "try", "while", "with", "yield",
}  # fmt: skip


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--work-dir",
        default="/tmp/keras_specdec_encoder_lookup",
        help="Where the task's vocabulary and the trained weights are cached.",
    )
    parser.add_argument(
        "--steps", type=int, default=3000, help="Training steps of the copy model."
    )
    parser.add_argument(
        "--batch-size", type=int, default=16, help="Training pairs per step."
    )
    parser.add_argument("--lr", type=float, default=1e-2, help="Peak learning rate.")
    parser.add_argument(
        "--layers", type=int, default=2, help="Encoder and decoder layers each."
    )
    parser.add_argument("--hidden", type=int, default=128, help="The model width.")
    parser.add_argument("--heads", type=int, default=4, help="Attention heads.")
    parser.add_argument(
        "--vocabulary", type=int, default=1000, help="Frequent tokens kept whole."
    )
    parser.add_argument(
        "--max-length", type=int, default=48, help="Encoder and decoder length."
    )
    parser.add_argument(
        "--gammas", type=int, nargs="+", default=[4, 8], help="Proposals a round."
    )
    parser.add_argument(
        "--temperatures",
        type=float,
        nargs="+",
        default=[0.0],
        help="Sampling temperatures (0 means greedy; exactness is checked there).",
    )
    parser.add_argument(
        "--max-ngram", type=int, default=3, help="PromptLookupDraft's longest n-gram."
    )
    parser.add_argument(
        "--num-examples", type=int, default=64, help="Held-out sources timed."
    )
    parser.add_argument(
        "--repetitions", type=int, default=10, help="Timed passes per configuration."
    )
    parser.add_argument("--seed", type=int, default=0, help="Weights, data, sampler.")
    parser.add_argument(
        "--ende", action="store_true", help="Also measure the shipped ende pair."
    )
    parser.add_argument(
        "--skip-copy", action="store_true", help="Skip the copy task (ende only)."
    )
    parser.add_argument(
        "--train-only", action="store_true", help="Stop after training the model."
    )
    parser.add_argument(
        "--out", default=None, help="Write the results as JSON to this file."
    )
    return parser.parse_args(argv)


def log(message):
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# ---------------------------------------------------------------- the task


def stdlib_files():
    """The standard library's top-level modules (not tests), sorted: a
    corpus on every machine (as `keras_specdec.bench.run.stdlib_token_ids`)."""
    import sysconfig

    root = sysconfig.get_paths()["stdlib"]
    return sorted(
        os.path.join(root, name)
        for name in os.listdir(root)
        if name.endswith(".py") and not name.startswith("test")
    )


def snippets(path, min_tokens, max_tokens):
    """Consecutive non-blank, non-comment lines of `path`, grouped greedily
    into snippets of min_tokens..max_tokens tokens (newlines included; a
    line longer than max_tokens is skipped). Token strings."""
    with open(path, encoding="utf-8", errors="replace") as f:
        lines = [line.rstrip() for line in f]
    out, current = [], []
    for line in lines:
        if not line.strip() or line.strip().startswith("#"):
            if len(current) >= min_tokens:
                out.append(current[:-1])  # without the last newline
            current = []
            continue
        tokens = TOKEN.findall(line) + ["\n"]
        if len(tokens) > max_tokens:
            current = []
            continue
        if len(current) + len(tokens) - 1 > max_tokens:
            if len(current) >= min_tokens:
                out.append(current[:-1])
            current = []
        current = current + tokens
    if len(current) >= min_tokens:
        out.append(current[:-1])
    return out


def edit(tokens):
    """The edited copy: `self` -> `this`, line-final `:` dropped, the first
    `NAME, NAME` pair swapped."""
    out = [t.replace("self", "this") if t.strip() == "self" else t for t in tokens]
    out = [
        t
        for i, t in enumerate(out)
        if not (t.strip() == ":" and (i + 1 == len(out) or out[i + 1] == "\n"))
    ]

    def name(t):
        return IDENTIFIER.fullmatch(t) is not None and t.strip() not in KEYWORDS

    for i in range(len(out) - 2):
        if name(out[i]) and out[i + 1] == "," and name(out[i + 2]):
            first, second = out[i].strip(), out[i + 2].strip()
            if first != second:
                lead = out[i][: len(out[i]) - len(first)]
                out[i] = lead + second
                out[i + 2] = " " + first
                break
    return out


class Vocabulary:
    """Frequent tokens whole, everything else spelled in characters."""

    def __init__(self, pieces):
        self.pieces = list(pieces)
        self.ids = {p: i for i, p in enumerate(self.pieces)}

    @classmethod
    def build(cls, token_lists, size):
        counts = collections.Counter(t for tokens in token_lists for t in tokens)
        chars = sorted({c for t in counts for c in t})
        pieces = SPECIALS + sorted(set(chars) | {" " + c for c in chars if c != " "})
        pieces += ["this", " this"]
        seen = set(pieces)
        for token, _ in counts.most_common():
            if len(pieces) >= len(SPECIALS) + size + 2 * len(chars):
                break
            if token not in seen:
                pieces.append(token)
                seen.add(token)
        return cls(pieces)

    def encode(self, tokens):
        ids = []
        for t in tokens:
            if t in self.ids:
                ids.append(self.ids[t])
            elif t.startswith(" ") and t[1:2] and " " + t[1] in self.ids:
                ids.append(self.ids[" " + t[1]])
                ids.extend(self.ids[c] for c in t[2:])
            else:
                ids.extend(self.ids[c] for c in t)
        return ids

    def decode(self, ids):
        return "".join(self.pieces[i] for i in ids if i >= len(SPECIALS))


def build_task(args):
    """Train and test arrays `(N, max_length)` (ids, then EOS, then PAD),
    and the vocabulary; cached in `--work-dir/task.npz`."""
    import numpy as np

    cache = os.path.join(
        args.work_dir, f"task_v{args.vocabulary}_l{args.max_length}.npz"
    )
    if os.path.exists(cache):
        data = np.load(cache, allow_pickle=False)
        vocab = Vocabulary(json.loads(str(data["pieces"])))
        return {k: data[k] for k in data.files if k != "pieces"}, vocab
    files = stdlib_files()
    train_files = [p for i, p in enumerate(files) if i % 10 != 0]
    test_files = [p for i, p in enumerate(files) if i % 10 == 0]
    lengths = (12, args.max_length - 12)  # room for words spelled in characters
    train = [s for p in train_files for s in snippets(p, *lengths)]
    test = [s for p in test_files for s in snippets(p, *lengths)]
    vocab = Vocabulary.build(train, args.vocabulary)

    def arrays(items):
        src = np.zeros((len(items), args.max_length), "int32")
        tgt = np.zeros((len(items), args.max_length), "int32")
        keep = np.zeros(len(items), bool)
        for row, tokens in enumerate(items):
            s, t = vocab.encode(tokens), vocab.encode(edit(tokens))
            if max(len(s), len(t)) + 1 > args.max_length:
                continue
            src[row, : len(s) + 1] = s + [EOS]
            tgt[row, : len(t) + 1] = t + [EOS]
            keep[row] = True
        return src[keep], tgt[keep]

    data = {}
    data["train_src"], data["train_tgt"] = arrays(train)
    data["test_src"], data["test_tgt"] = arrays(test)
    os.makedirs(args.work_dir, exist_ok=True)
    np.savez(cache, pieces=json.dumps(vocab.pieces), **data)
    return data, vocab


# ---------------------------------------------------------------- training


def model_args(args):
    return argparse.Namespace(
        layers=args.layers,
        hidden=args.hidden,
        heads=args.heads,
        intermediate=2 * args.hidden,
        key_value_dim=None,
        dropout=0.0,
        lr=args.lr,
        optimizer="adafactor",
        warmup_steps=min(100, args.steps // 10),
    )


def copy_model(args, data, vocab):
    """The trained copy model (no preprocessor): loaded from the cache in
    `--work-dir` when one with the same settings exists, else trained. A
    cached model of the same settings but fewer steps is continued (the
    remaining steps on a fresh warm-up + cosine schedule) rather than
    trained again from scratch."""
    import glob

    import keras
    import train_t5

    config = {
        k: getattr(args, k)
        for k in ("steps", "batch_size", "lr", "layers", "hidden", "heads",
                  "vocabulary", "max_length", "seed")
    }  # fmt: skip

    def path_for(steps):
        name = "copy_t5_" + "_".join(
            f"{k}{steps if k == 'steps' else v}" for k, v in config.items()
        )
        return os.path.join(args.work_dir, name + ".weights.h5")

    weights = path_for(args.steps)
    keras.utils.set_random_seed(args.seed)
    model = train_t5.build_model(len(vocab.pieces), model_args(args))
    if os.path.exists(weights):
        model.backbone.load_weights(weights)
        log(f"loaded the trained copy model from {weights}")
        with open(weights[: -len(".weights.h5")] + ".json") as f:
            return model, json.load(f)
    step, history = 0, []
    pattern = re.escape(path_for(0)).replace("steps0", "steps([0-9]+)")
    earlier = [
        (int(m.group(1)), m.group(0))
        for p in glob.glob(path_for("*"))
        if (m := re.fullmatch(pattern, p)) and int(m.group(1)) < args.steps
    ]
    if earlier:
        step, found = max(earlier)
        model.backbone.load_weights(found)
        with open(found[: -len(".weights.h5")] + ".json") as f:
            history = json.load(f)["history"]
        log(f"continuing the cached copy model of {step} steps ({found})")
    train_args = model_args(args)
    train_args.warmup_steps = min(100, (args.steps - step) // 10)
    train_t5.compile_model(model, train_args, args.steps - step)
    src, tgt = data["train_src"], data["train_tgt"]
    log(
        f"training {model.count_params():,} parameters for {args.steps - step} "
        f"steps of {args.batch_size} pairs ({len(src):,} training pairs)"
    )
    start, chunk = time.time(), 500
    while step < args.steps:
        count = min(chunk, args.steps - step)
        t0 = time.time()
        idx = train_t5.batch_indices(
            len(src), step * args.batch_size, count * args.batch_size, args.seed
        )
        x, y, w = train_t5.pack(src[idx], tgt[idx])
        fit = keras.Model.fit(
            model, x, y, sample_weight=w, batch_size=args.batch_size, verbose=0
        )
        fit_seconds = time.time() - t0
        step += count
        vx, vy, vw = train_t5.pack(data["test_src"][:512], data["test_tgt"][:512])
        val = keras.Model.evaluate(
            model,
            vx,
            vy,
            sample_weight=vw,
            batch_size=64,
            verbose=0,
            return_dict=True,
        )
        record = {
            "step": step,
            "minutes_this_run": round((time.time() - start) / 60, 2),
            "ms_per_step": round(1000 * fit_seconds / count, 1),
            "train_loss": float(fit.history["token_loss"][-1]),
            "test_loss": float(val["token_loss"]),
            "test_accuracy": float(val["accuracy"]),
        }
        history.append(record)
        log(json.dumps(record))
    model.backbone.save_weights(weights)
    summary = {"config": config, "parameters": model.count_params(),
               "history": history}  # fmt: skip
    with open(weights[: -len(".weights.h5")] + ".json", "w") as f:
        json.dump(summary, f, indent=1)
    return model, summary


# ---------------------------------------------------------------- measuring


def seq2seq_batch(source_ids, max_length, encoder_length):
    """One row's `generate()` inputs without a preprocessor: the source
    (padded to encoder_length) and the decoder start token."""
    import numpy as np

    enc = np.zeros((1, encoder_length), "int32")
    enc[0, : len(source_ids)] = source_ids
    dec = np.zeros((1, max_length), "int32")
    dec_mask = np.zeros((1, max_length), bool)
    dec_mask[0, 0] = True  # the start token (the pad id)
    return {
        "encoder_token_ids": enc,
        "encoder_padding_mask": enc != PAD,
        "decoder_token_ids": dec,
        "decoder_padding_mask": dec_mask,
    }


def output_ids(out):
    """A `generate()` output row's new tokens up to and including the first
    end token."""
    import numpy as np

    ids = [int(t) for t in np.asarray(out["decoder_token_ids"])[0][1:]]
    return ids[: ids.index(EOS) + 1] if EOS in ids else ids


def source_share(source, output, n=3):
    """Share of output tokens (from the n-th on) that end an n-gram also in
    the source: how much of the output a source lookup could copy."""
    grams = {tuple(source[i : i + n]) for i in range(len(source) - n + 1)}
    hits = [
        tuple(output[i - n + 1 : i + 1]) in grams for i in range(n - 1, len(output))
    ]
    return sum(hits) / len(hits) if hits else float("nan")


def measure(make_target, sources, args, label):
    """Times the target alone and the lookup drafts (encoder on / off, each
    gamma) on `sources` (lists of source token ids, end token included), at
    each temperature. Returns a list of result dicts."""
    import numpy as np

    import keras_specdec
    from keras_specdec.bench.run import base_sampler_for
    from keras_specdec.drafts import PromptLookupDraft
    from keras_specdec.measure import timed_call

    encoder_length = max(args.max_length, max(len(s) for s in sources))
    batches = [seq2seq_batch(s, args.max_length, encoder_length) for s in sources]
    results = []
    for temperature in args.temperatures:
        configs = {"target alone": None}
        for gamma in args.gammas:
            for search_encoder in (True, False):
                configs[f"lookup encoder {'on' if search_encoder else 'off'}, "
                        f"gamma {gamma}"] = (gamma, search_encoder)  # fmt: skip
        models, samplers = {}, {}
        for name, config in configs.items():
            model = make_target()
            base = base_sampler_for(temperature, args.seed)
            if config is None:
                sampler = base
            else:
                gamma, search_encoder = config
                draft = PromptLookupDraft(
                    model.backbone.vocabulary_size,
                    max_ngram=args.max_ngram,
                    search_encoder=search_encoder,
                )
                sampler = keras_specdec.SpeculativeSampler(
                    draft, gamma, base_sampler=base, seed=args.seed
                )
            model.compile(sampler=sampler)
            models[name], samplers[name] = model, sampler

        def run_all(model):
            return [model.generate(b, stop_token_ids=(EOS,)) for b in batches]

        outputs = {}
        for name, model in models.items():  # compile (excluded from timing)
            t0 = time.time()
            outputs[name] = [output_ids(o) for o in run_all(model)]
            log(f"{label} T={temperature:g} {name}: first pass (compile) "
                f"{time.time() - t0:.1f} s")  # fmt: skip
            if name != "target alone":
                samplers[name].reset_stats()
        # Interleaved as `median_seconds` times (each repetition starts at
        # another configuration), keeping each pass's output length: at T=1
        # the configurations sample different outputs of different lengths.
        names = list(models)
        passes = {name: [] for name in names}  # (seconds, new tokens)
        for repetition in range(args.repetitions):
            for k in range(len(names)):
                name = names[(k + repetition) % len(names)]
                out, sec = timed_call(lambda m=models[name]: run_all(m))
                passes[name].append((sec, sum(len(output_ids(o)) for o in out)))
        seconds = {n: float(np.median([t for t, _ in passes[n]])) for n in names}
        per_token = {n: float(np.median([t / c for t, c in passes[n]])) for n in names}
        plain = outputs["target alone"]
        new_tokens = sum(len(o) for o in plain)
        share = float(np.nanmean([source_share(s, o) for s, o in zip(sources, plain)]))
        log(f"{label} T={temperature:g}: target alone {seconds['target alone']:.3f}"
            f" s per pass of {len(sources)} sources ({new_tokens} new tokens at the "
            f"first pass), output 3-grams found in the source {share:.2f}")  # fmt: skip
        for name, config in configs.items():
            row = {
                "task": label,
                "temperature": temperature,
                "configuration": name,
                "seconds_per_pass": seconds[name],
                "speedup": seconds["target alone"] / seconds[name],
                "seconds_per_new_token": per_token[name],
                "speedup_per_new_token": per_token["target alone"] / per_token[name],
                "new_tokens_per_pass": float(np.mean([c for _, c in passes[name]])),
                "output_3grams_in_source": share,
            }
            if config is not None:
                stats = samplers[name].stats()
                row.update(
                    gamma=config[0],
                    search_encoder=config[1],
                    tokens_per_target_call=stats["tokens_per_target_call"],
                    # Outputs end at the end token; `emitted_tokens` also
                    # counts tokens a round accepted after it.
                    output_tokens_per_target_call=sum(c for _, c in passes[name])
                    / stats["row_target_calls"],
                    acceptance_rate=stats["acceptance_rate"],
                    proposed_per_round=stats["proposed_tokens"] / stats["target_calls"],
                    stats={k: v for k, v in stats.items() if isinstance(v, int)},
                )
                if temperature == 0:
                    same = [o == p for o, p in zip(outputs[name], plain)]
                    row["greedy_identical"] = all(same)
                    row["identical_rows"] = f"{sum(same)}/{len(same)}"
                log(f"  {name}: tokens/target call "
                    f"{row['tokens_per_target_call']:.2f} (output tokens "
                    f"{row['output_tokens_per_target_call']:.2f}), accepted/judged "
                    f"{row['acceptance_rate']:.3f}, proposals/round "
                    f"{row['proposed_per_round']:.2f}, "
                    f"{seconds[name]:.3f} s/pass, speedup {row['speedup']:.2f}x"
                    f" (per new token {row['speedup_per_new_token']:.2f}x, "
                    f"{row['new_tokens_per_pass']:.0f} new tokens a pass)"
                    + (f", greedy identical: {row['identical_rows']} rows"
                       if temperature == 0 else ""))  # fmt: skip
            results.append(row)
        if temperature == 0:
            results[-len(configs)]["outputs"] = plain
        del models
    return results


def copy_task(args):
    import numpy as np

    data, vocab = build_task(args)
    lengths = (data["test_tgt"] != PAD).sum(1)
    log(f"copy task: {len(data['train_src']):,} training / "
        f"{len(data['test_src']):,} held-out pairs, vocabulary "
        f"{len(vocab.pieces)}, held-out target length {lengths.mean():.1f} "
        f"tokens (end token included)")  # fmt: skip
    model, summary = copy_model(args, data, vocab)
    if args.train_only:
        return {"training": summary}
    import keras_hub
    import train_t5

    def make_target():
        target = train_t5.build_model(len(vocab.pieces), model_args(args))
        target.set_weights(model.get_weights())
        return target

    rng = np.random.default_rng(args.seed)
    picks = rng.choice(len(data["test_src"]), args.num_examples, replace=False)
    sources = [[int(t) for t in data["test_src"][i] if t != PAD] for i in picks]
    references = [[int(t) for t in data["test_tgt"][i] if t != PAD] for i in picks]
    rows = measure(make_target, sources, args, "copy")
    greedy = next((r["outputs"] for r in rows if "outputs" in r), None)
    quality = None
    if greedy is not None:
        exact = float(np.mean([g == r for g, r in zip(greedy, references)]))
        plain_copy = float(np.mean([s == r for s, r in zip(sources, references)]))
        quality = {"greedy_equals_reference": exact,
                   "source_equals_reference": plain_copy}  # fmt: skip
        log(f"copy task: greedy output equals the edited reference on {exact:.2f}"
            f" of the held-out sources (the unedited source equals it on "
            f"{plain_copy:.2f})")  # fmt: skip
        log("example: source:\n" + vocab.decode(sources[0]) + "\n  greedy:\n"
            + vocab.decode(greedy[0]))  # fmt: skip
    del keras_hub
    return {"training": summary, "quality": quality, "rows": rows}


def ende_task(args):
    import keras_hub
    import numpy as np

    import keras_specdec

    path = keras_specdec.pairs.path("ende", "target")
    target, _ = keras_specdec.pairs.load("ende")
    prompts = keras_specdec.pairs.benchmark_prompts("ende")[: args.num_examples]
    x = target.preprocessor.generate_preprocess(
        {"encoder_text": prompts, "decoder_text": [""] * len(prompts)}
    )
    ids, mask = (
        np.asarray(x["encoder_token_ids"]),
        np.asarray(x["encoder_padding_mask"]),
    )
    sources = [[int(t) for t, m in zip(r, k) if m] for r, k in zip(ids, mask)]
    mean = np.mean([len(s) for s in sources])
    log(f"ende: {len(sources)} held-out sources, {mean:.1f} tokens on average")

    def make_target():
        return keras_hub.models.Seq2SeqLM.from_preset(path, preprocessor=None)

    return {"rows": measure(make_target, sources, args, "ende")}


def main(argv=None):
    args = parse_args(argv)
    import keras_specdec.model_utils

    keras_specdec.model_utils.ignore_t5_mask_warning()
    results = {"args": vars(args)}
    if not args.skip_copy:
        results["copy"] = copy_task(args)
    if args.ende and not args.train_only:
        results["ende"] = ende_task(args)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(results, f, indent=1)
    return results


if __name__ == "__main__":
    main()
