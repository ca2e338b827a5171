"""Shared pieces of the example scripts: offline checks, timing, the report.

Nothing here touches the network except `check_preset`'s short reachability
probe (and only for a preset that is neither a local directory nor in the
kagglehub cache).
"""

import os
import socket
import sys
import threading

os.environ.setdefault("KERAS_BACKEND", "jax")

PROBE_TIMEOUT_S = 3.0
FAIL_EXIT_CODE = 2


class Unavailable(RuntimeError):
    """A dataset or preset that cannot be had without network access."""


def fail(problems, offline_hint=True):
    """Print every problem and exit (code 2), without a traceback."""
    print("\n".join(["ERROR: cannot run this example:"] + problems), file=sys.stderr)
    if offline_hint:
        print(
            "Or run offline with --offline-pairs (the pair shipped with "
            "keras_specdec; no network at all).",
            file=sys.stderr,
        )
    sys.exit(FAIL_EXIT_CODE)


from keras_specdec.model_utils import ignore_t5_mask_warning  # noqa: E402,F401

# --------------------------------------------------------------------------
# Datasets.


def check_tfds(name, data_dir, split):
    """Raise `Unavailable` at once unless TFDS dataset `name` is prepared in
    `data_dir` (never triggers a download)."""
    import tensorflow_datasets as tfds

    builder = tfds.builder(name, data_dir=data_dir)
    if not builder.is_prepared():
        where = data_dir or os.environ.get("TFDS_DATA_DIR", "~/tensorflow_datasets")
        raise Unavailable(
            f"- TFDS dataset {name!r} (split {split!r}) is not prepared in "
            f"{where} ({builder.data_dir} has no dataset_info.json). Run "
            f"`tfds build {name}` on a machine with internet (or "
            f'`python -c "import tensorflow_datasets as tfds; '
            f"tfds.load('{name}', split='{split}')\"`), copy its data dir "
            f"here and pass --data-dir DIR (or set TFDS_DATA_DIR)."
        )
    return builder


def load_tfds(name, data_dir, split, num_examples, fields):
    """First `num_examples` rows of a prepared TFDS split, as tuples of str."""
    import tensorflow_datasets as tfds

    dataset = tfds.load(name, split=split, data_dir=data_dir, download=False)
    rows = []
    for example in tfds.as_numpy(dataset.take(num_examples)):
        rows.append(tuple(example[f].decode("utf-8") for f in fields))
    return rows


# --------------------------------------------------------------------------
# Presets.


def _reachable(host, timeout=PROBE_TIMEOUT_S):
    """(ok, reason): a TCP connection to host:443 within `timeout` seconds.
    Run in a thread so that a slow DNS lookup cannot block longer."""
    result = {}

    def probe():
        try:
            socket.create_connection((host, 443), timeout=timeout).close()
            result["ok"] = True
        except OSError as error:
            result["error"] = repr(error)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout + 0.5)
    if result.get("ok"):
        return True, ""
    return False, result.get("error", f"no answer within {timeout:.0f} s")


def _kagglehub_cached(handle):
    # kaggle://owner/model/framework/variation/version
    parts = handle[len("kaggle://") :].split("/")
    cache = os.environ.get(
        "KAGGLEHUB_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "kagglehub")
    )
    return len(parts) == 5 and os.path.isdir(os.path.join(cache, "models", *parts))


def check_preset(preset, task_cls_name):
    """Raise `Unavailable` quickly unless `preset` can be loaded: a local
    preset directory, a kagglehub-cached preset, or a reachable hub."""
    import keras_hub

    if os.path.isdir(preset):
        if not os.path.isfile(os.path.join(preset, "config.json")):
            raise Unavailable(f"- {preset!r} is a directory without a config.json.")
        return
    task_cls = getattr(keras_hub.models, task_cls_name)
    how = (
        f'python -c "import keras_hub; keras_hub.models.{task_cls_name}'
        f".from_preset('{preset}').save_to_preset('{os.path.basename(preset)}')\""
    )
    if preset in task_cls.presets:
        handle = task_cls.presets[preset]["kaggle_handle"]
    elif preset.startswith(("kaggle://", "hf://")):
        handle = preset
    elif os.sep in preset or preset.startswith("."):
        raise Unavailable(f"- local preset directory {preset!r} does not exist.")
    else:
        raise Unavailable(
            f"- {preset!r} is neither a local preset directory nor a "
            f"{task_cls_name} preset name ({', '.join(task_cls.presets)})."
        )
    if handle.startswith("kaggle://") and _kagglehub_cached(handle):
        return
    host = "www.kaggle.com" if handle.startswith("kaggle://") else "huggingface.co"
    ok, reason = _reachable(host)
    if not ok:
        credentials = (
            " (Kaggle presets need KAGGLE_USERNAME/KAGGLE_KEY or ~/.kaggle/kaggle.json)"
            if handle.startswith("kaggle://")
            else ""
        )
        raise Unavailable(
            f"- preset {preset!r} ({handle}) cannot be downloaded: {host} is "
            f"unreachable ({reason}). On a machine with internet{credentials} "
            f"download it with `{how}`, copy the directory here and pass its "
            f"local path instead of the name."
        )


def check_all(dataset=None, presets=(), packages=()):
    """Run every check (dataset, presets, installed packages), then fail once
    listing all problems."""
    problems = []
    if dataset is not None:
        try:
            check_tfds(*dataset)
        except Unavailable as error:
            problems.append(str(error))
    for preset, task_cls_name in presets:
        try:
            check_preset(preset, task_cls_name)
        except Unavailable as error:
            problems.append(str(error))
    problems += missing_packages(packages)
    if problems:
        fail(problems, offline_hint=dataset is not None or bool(presets))


# --------------------------------------------------------------------------
# Generation, timing and the report.


def timed_outputs(model, inputs, max_length, repetitions):
    """Generate every input (batch 1) once as warm-up (compilation, excluded),
    then `repetitions` timed passes over all inputs. Returns (outputs of the
    warm-up pass, first-pass seconds, median seconds per pass)."""
    from keras_specdec import analysis

    def one_pass():
        return [model.generate(x, max_length=max_length) for x in inputs]

    outputs, first = analysis.timed_call(one_pass)
    return outputs, first, analysis.median_seconds(one_pass, repetitions, warmup=0)


def compare(target, draft, inputs, args):
    """Baseline vs speculative generate on `inputs`; returns a result dict."""
    import keras_specdec
    from keras_specdec.rejection import base_sampler_for

    def base_sampler():
        return base_sampler_for(args.temperature, seed=args.seed, top_p=args.top_p)

    target.compile(sampler=base_sampler())
    plain, plain_first, plain_time = timed_outputs(
        target, inputs, args.max_length, args.repetitions
    )
    sampler = keras_specdec.SpeculativeSampler(
        draft,
        num_speculative_tokens=args.gamma,
        base_sampler=base_sampler(),
        seed=args.seed,
    )
    target.compile(sampler=sampler)
    spec, spec_first, spec_time = timed_outputs(
        target, inputs, args.max_length, args.repetitions
    )
    stats = sampler.stats()  # warm-up pass and timed passes together
    return {
        "plain": plain,
        "speculative": spec,
        "plain_seconds": plain_time,
        "speculative_seconds": spec_time,
        "plain_first_seconds": plain_first,
        "speculative_first_seconds": spec_first,
        "speedup": plain_time / spec_time,
        "identical": plain == spec if args.temperature == 0 else None,
        "stats": stats,
    }


def bleu(hypotheses, references):
    import sacrebleu

    return sacrebleu.corpus_bleu(hypotheses, [references]).score


def rouge_l(hypotheses, references):
    """Mean ROUGE-L F1 in percent, by `keras_hub.metrics.RougeL` (Google's
    `rouge_score`: lower-cased, split on non-alphanumerics, no stemming)."""
    import keras_hub

    metric = keras_hub.metrics.RougeL(use_stemmer=False)  # stateful: a new one
    return 100.0 * float(metric(list(references), list(hypotheses))["f1_score"])


def missing_packages(modules):
    """Problems for the packages in `modules` (import names, e.g.
    "sacrebleu", "rouge_score") that are not installed."""
    import importlib.util

    pip_names = {"rouge_score": "rouge-score"}
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if not missing:
        return []
    names = " ".join(pip_names.get(m, m) for m in missing)
    return [
        f"- the quality metrics need {', '.join(missing)}: `pip install {names}` "
        '(or `pip install "keras-specdec[bench]"`).'
    ]


def argument_parser(doc):
    """An argument parser whose `--help` shows the script's docstring opening
    paragraph and every option's default."""
    import argparse

    return argparse.ArgumentParser(
        description=doc.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )


def add_common_flags(parser, default_target, default_draft, default_max_length):
    parser.add_argument(
        "--target",
        default=default_target,
        help="The target model: a KerasHub preset name or a local preset directory.",
    )
    parser.add_argument(
        "--draft",
        default=default_draft,
        help="The draft model: a KerasHub preset name or a local preset directory.",
    )
    parser.add_argument(
        "--offline-pairs",
        action="store_true",
        help="Use the pair shipped with keras_specdec and its held-out data "
        "(no network at all).",
    )
    parser.add_argument(
        "--pair",
        default=None,
        help="With --offline-pairs: a shipped pair name or a directory laid out "
        "like one (target/, draft/, test.*); None means the example's own pair.",
    )
    parser.add_argument(
        "--gamma",
        type=int,
        default=4,
        help="Draft tokens per target call (num_speculative_tokens).",
    )
    parser.add_argument(
        "--temperature",
        type=float,
        default=0.0,
        help="The sampling temperature; 0 means greedy decoding.",
    )
    parser.add_argument(
        "--top-p",
        type=float,
        default=None,
        help="Sample from the top-p nucleus (with --temperature > 0); None "
        "means plain sampling.",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="The sampling seed (with sampling)."
    )
    parser.add_argument(
        "--max-length",
        type=int,
        default=default_max_length,
        help="The generation length in tokens, prompt included (decoder "
        "length for T5).",
    )
    parser.add_argument(
        "--repetitions",
        type=int,
        default=3,
        help="Timed passes over all inputs after a warm-up pass; the median "
        "is reported.",
    )
    parser.add_argument(
        "--num-examples", type=int, default=8, help="How many inputs to generate for."
    )


def report(result, title, quality=None, show=2, sources=None):
    """Print the comparison; `quality` maps metric name -> (plain, spec)."""
    stats = result["stats"]
    print("=" * 72)
    print(title)
    for i in range(min(show, len(result["plain"]))):
        print("-" * 72)
        if sources is not None:
            print(f"input:        {sources[i]!r}")
        print(f"target alone: {result['plain'][i]!r}")
        print(f"speculative:  {result['speculative'][i]!r}")
    print("=" * 72)
    if result["identical"] is not None:
        print(f"identical outputs (greedy):  {result['identical']}")
    print(f"acceptance rate (alpha):     {stats['acceptance_rate']:.3f}")
    print(f"tokens per target call:      {stats['tokens_per_target_call']:.2f}")
    for name, (plain, spec) in (quality or {}).items():
        print(f"{name + ':':<29}target alone {plain:.2f}, speculative {spec:.2f}")
    print(
        f"walltime, target alone:      {result['plain_seconds']:.3f} s per pass "
        f"(warm-up pass with compile {result['plain_first_seconds']:.1f} s)"
    )
    print(
        f"walltime, speculative:       {result['speculative_seconds']:.3f} s per "
        f"pass (warm-up pass with compile {result['speculative_first_seconds']:.1f} s)"
    )
    print(f"measured speedup:            {result['speedup']:.2f}x")
