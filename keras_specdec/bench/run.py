"""Benchmark speculative decoding the way the paper's Table 2 does.

    python -m keras_specdec.benchmark --pair code --gammas 1 2 3 4 6 8 \\
        --temperatures 0 1 --schedules auto heuristic --out benchmarks/code

For each temperature (0 = greedy) and batch size it times, in one run on this
machine and after warm-up, `generate()` of the target alone with the base
sampler and with `SpeculativeSampler` for each gamma, fixed work per call
(`stop_token_ids=None`: every call generates up to `--max-length`), on the
pair's held-out prompts. All configurations of a temperature are compiled
first (one target instance each) and then timed in turn within every one of
`--repetitions` rounds, so drift of the machine's speed moves baseline and
speculative timings together; medians per call.

Each row reports: measured alpha, measured c (draft step / target step) and
v (verify pass of gamma + 1 tokens / target step), Theorem 3.8's predicted
improvement, the measured improvement and their ratio (implementation
efficiency), the first-call (compile) time, and where a round's time goes
(draft steps, verify pass, everything else). Writes `results.json`,
`results.md` and PNG plots (speedup and alpha against gamma, measured points
over the theorem's curves; speedup against batch size).

Batches (`--batch-sizes 1 4 16`): batch B uses ceil(N / B) batches of the N
held-out prompts (at least one); row r of batch j holds prompt
(j * B + r) mod N, so a batch larger than N cycles through the prompts.
Causal prompts are cut to their first `--prompt-tokens` tokens.

Also (issue rows of the paper's Table 3 and of adaptive gamma):
- `--schedules auto heuristic`: `num_speculative_tokens="auto"` with the
  measured c and verify costs v (Theorem 3.8 schedule) and HF's heuristic
  schedule, both with `max_speculative_tokens = max(--gammas)`, next to the
  fixed gammas; their "predicted" columns are at the gamma that Theorem 3.8
  with the measured v prefers for the measured alpha.
- `--model-free-drafts unigram bigram prompt_lookup` at `--model-free-gammas`:
  unigram and bigram drafts fitted on `--fit-files` Python standard library
  files (tokenized with the pair's tokenizer; c taken as 0), and prompt lookup.
"""

import argparse
import json
import math
import os
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # tf.text's C++ start-up logs

# Where runs go unless `--out` says otherwise: a new folder per run, so a run
# never overwrites the results shipped in `benchmarks/`.
DEFAULT_OUT_ROOT = "benchmark_runs"

_START = time.perf_counter()


def log(message):
    """Progress line with the seconds since the run started (flushed)."""
    print(f"[{time.perf_counter() - _START:7.1f}s] {message}", flush=True)


# Short generic prompts (examples, probes). The benchmark itself uses the
# pair's held-out prompts, `keras_specdec.pairs.benchmark_prompts`.
CODE_PROMPTS = [
    "def binary_search(items, value):\n    ",
    "class LRUCache:\n    def __init__(self, capacity):\n        ",
    "import os\n\n\ndef read_lines(path):\n    ",
    "def parse_args(argv=None):\n    parser = argparse.ArgumentParser(",
]


def base_sampler_for(temperature, seed=0):
    import keras_hub

    if temperature == 0:
        return keras_hub.samplers.GreedySampler()
    return keras_hub.samplers.RandomSampler(temperature=temperature, seed=seed)


def output_distinct_4grams(model, prompts, max_length, seq2seq):
    """Mean over prompts of distinct / all 4-grams of the generated token ids
    (1.0: no 4-gram repeats; degenerate loops score low and make drafts agree
    easily, inflating alpha)."""
    import numpy as np

    tokenizer = model.preprocessor.tokenizer
    ratios = []
    for prompt in prompts:
        text = model.generate(prompt, max_length=max_length, stop_token_ids=None)
        generated = text if seq2seq else text[len(prompt) :]
        ids = [int(i) for i in np.asarray(tokenizer(generated)).ravel()]
        grams = [tuple(ids[i : i + 4]) for i in range(len(ids) - 3)]
        if grams:
            ratios.append(len(set(grams)) / len(grams))
    return float(np.mean(ratios)) if ratios else float("nan")


def stdlib_token_ids(tokenizer, num_files):
    """Token ids of the first `num_files` Python standard library modules
    (sorted paths, so every machine with the same Python fits the same
    drafts), each followed by nothing: a corpus present on every machine."""
    import sysconfig

    import numpy as np

    root = sysconfig.get_paths()["stdlib"]
    paths = sorted(
        os.path.join(root, name)
        for name in os.listdir(root)
        if name.endswith(".py") and not name.startswith("test")
    )[:num_files]
    ids = []
    for path in paths:
        with open(path, encoding="utf-8", errors="replace") as f:
            ids.append(np.asarray(tokenizer(f.read()), "int32"))
    return np.concatenate(ids)


def fit_model_free_drafts(target, args):
    import keras_specdec

    if not args.model_free_drafts:
        return {}
    vocabulary_size = target.backbone.vocabulary_size
    fitted = {
        "prompt_lookup": keras_specdec.PromptLookupDraft(vocabulary_size, max_ngram=3)
    }
    if {"unigram", "bigram"} & set(args.model_free_drafts):
        tokens = stdlib_token_ids(target.preprocessor.tokenizer, args.fit_files)
        fitted["unigram"] = keras_specdec.UnigramDraft.fit(tokens, vocabulary_size)
        fitted["bigram"] = keras_specdec.BigramDraft.fit(
            tokens, vocabulary_size, top_k=16
        )
        print(f"fitted unigram/bigram drafts on {tokens.size:,} stdlib tokens")
    return fitted


def prompt_batches(prompts, batch_size):
    """ceil(N / B) batches (at least one) of B prompts each: row r of batch j
    holds prompt (j * B + r) mod N, so every prompt appears at least once and
    a batch larger than N cycles through the prompts."""
    n = len(prompts)
    num_batches = max(1, math.ceil(n / batch_size))
    return [
        [prompts[(j * batch_size + r) % n] for r in range(batch_size)]
        for j in range(num_batches)
    ]


def truncate_prompts(model, prompts, num_tokens):
    """Each prompt cut to its first `num_tokens` tokens (causal LMs; the
    preprocessor adds its start token to these)."""
    import numpy as np

    tokenizer = model.preprocessor.tokenizer
    cut = []
    for prompt in prompts:
        ids = np.asarray(tokenizer(prompt)).ravel()
        cut.append(
            prompt
            if len(ids) <= num_tokens
            else str(tokenizer.detokenize(ids[:num_tokens].tolist()))
        )
    return cut


def plain_steps(model, batch, max_length):
    """Target calls of plain `generate()` on `batch`: KerasHub's loop runs
    from the shortest row's prompt length to `max_length`."""
    import numpy as np

    x = model.preprocessor.generate_preprocess(batch, sequence_length=max_length)
    mask = np.asarray(x.get("padding_mask", x.get("decoder_padding_mask")))
    return max_length - int(mask.sum(axis=1).min())


def full_batch(model, prompts, batch_size, max_length, seq2seq):
    """A batch whose prompts fill all `max_length` positions: `generate()` on
    it runs the prefill, dispatch and pre/post-processing of a call but no
    decoding step (its loop starts at max_length), the per-call cost that a
    call pays besides its rounds. None for encoder-decoders (the decoder
    prompt is always just the start token)."""
    import numpy as np

    if seq2seq:
        return None
    text = "\n".join(prompts)
    while len(np.asarray(model.preprocessor.tokenizer(text)).ravel()) < max_length:
        text = text + "\n" + text
    return [text] * batch_size


def measure_costs(target, draft, gammas, batch_size, args):
    """Seconds of one target step (chunk 1), of each verify pass (chunk
    gamma + 1) and of a draft step (chunk 1) and the draft's first call of a
    round (chunk 2, it re-feeds one token), each inside a compiled loop
    (`analysis.measure_step_seconds`) at this batch size."""
    from keras_specdec import analysis

    chunks = sorted({1, *(g + 1 for g in gammas)})
    log(
        f"batch {batch_size}: timing target calls of {chunks} tokens and draft "
        f"calls of [1, 2] tokens inside compiled loops "
        f"({args.cost_repetitions} repetitions)"
    )
    kwargs = dict(
        batch_size=batch_size,
        max_length=args.max_length,
        repetitions=args.cost_repetitions,
    )
    target_seconds = analysis.measure_step_seconds(target, chunks, **kwargs)
    draft_seconds = analysis.measure_step_seconds(draft, (1, 2), **kwargs)
    return target_seconds, draft_seconds


def run(args):
    import numpy as np

    import keras_specdec

    log(f"loading pair {args.pair!r}")
    target, draft = keras_specdec.pairs.load(args.pair)
    # Held-out prompts: source sentences of the test split (encoder-decoder
    # pairs) or function openings from files never trained on (causal).
    prompts = keras_specdec.pairs.benchmark_prompts(args.pair)[: args.num_prompts]
    seq2seq = keras_specdec.pairs.is_seq2seq(
        keras_specdec.pairs.path(args.pair, "target")
    )
    if not seq2seq:
        prompts = truncate_prompts(target, prompts, args.prompt_tokens)
    pair_name = os.path.basename(os.path.normpath(args.pair))
    all_gammas = sorted(
        set(args.gammas + (args.model_free_gammas if args.model_free_drafts else []))
    )
    costs = {
        b: measure_costs(target, draft, all_gammas, b, args) for b in args.batch_sizes
    }
    fitted = fit_model_free_drafts(target, args)
    rows = []
    for temperature in args.temperatures:
        configs = [(f"{pair_name}/draft", draft, g) for g in args.gammas]
        configs += [(f"{pair_name}/draft", draft, s) for s in args.schedules]
        configs += [
            (name, fitted[name], g)
            for name in args.model_free_drafts
            for g in args.model_free_gammas
        ]
        names = ["target alone"] + [f"{d} gamma={g}" for d, _, g in configs]
        # One target instance per sampler, each compiled once per batch
        # shape; then every repetition times all of them in turn, so that
        # drift of this machine's speed (20% over minutes here) moves
        # baseline and speculative timings together instead of biasing a
        # ratio.
        models = []
        for draft_name, draft_model, gamma in configs:
            if not models:
                target.compile(sampler=base_sampler_for(temperature))
                models.append(target)
            model = keras_specdec.pairs.load(args.pair)[0]
            model.compile(
                sampler=make_sampler_for_batch(
                    args, temperature, draft_model, gamma, draft_model is draft, costs
                )
            )
            models.append(model)
        batch1, temperature_rows = {}, []
        for batch_size in args.batch_sizes:
            target_seconds, draft_seconds = costs[batch_size]
            batches = prompt_batches(prompts, batch_size)
            first_call = []
            for model, name in zip(models, names):
                log(
                    f"T={temperature} batch {batch_size}: compiling {name} (first call)"
                )
                start = time.perf_counter()
                model.generate(
                    batches[0], max_length=args.max_length, stop_token_ids=None
                )
                first_call.append(time.perf_counter() - start)
                if hasattr(model.sampler, "reset_stats"):
                    model.sampler.reset_stats()
            times = interleaved_seconds(
                models,
                batches,
                args.max_length,
                args.repetitions,
                label=f"T={temperature} batch {batch_size}",
            )
            stats = [
                m.sampler.stats() if hasattr(m.sampler, "stats") else None
                for m in models
            ]
            full = full_batch(target, prompts, batch_size, args.max_length, seq2seq)
            if full is not None:
                fixed = interleaved_seconds(
                    models,
                    [full],
                    args.max_length,
                    args.repetitions,
                    label=f"T={temperature} batch {batch_size} per-call cost",
                    warm_up=True,
                )
                fixed = [float(np.median(t)) for t in fixed]
            else:
                fixed = [None] * len(models)  # not measurable: see full_batch
            profiles = [None] * len(models)
            if args.profile:
                profiles = [
                    profile_call(model, name, batches[0], args, temperature, batch_size)
                    for model, name in zip(models, names)
                ]
            for m in models:
                if hasattr(m.sampler, "reset_stats"):
                    m.sampler.reset_stats()
            calls = args.repetitions * len(batches)
            steps = np.mean([plain_steps(target, b, args.max_length) for b in batches])
            base = {
                "median": float(np.median(times[0])),
                "mean": float(np.mean(times[0])),
                "first_call": first_call[0],
                "fixed": fixed[0],
                "steps": float(steps),
                "profile": profiles[0],
            }
            for i, (draft_name, draft_model, gamma) in enumerate(configs, start=1):
                row = result_row(
                    pair=pair_name,
                    batch_size=batch_size,
                    max_length=args.max_length,
                    draft=draft_name,
                    temperature=temperature,
                    gamma=gamma,
                    gammas=args.gammas,
                    stats=stats[i],
                    model_draft=draft_model is draft,
                    target_seconds=target_seconds,
                    draft_seconds=draft_seconds,
                    base=base,
                    speculative={
                        "median": float(np.median(times[i])),
                        "mean": float(np.mean(times[i])),
                        "first_call": first_call[i],
                        "fixed": fixed[i],
                        "rounds": stats[i]["target_calls"] / calls,
                        "profile": profiles[i],
                    },
                )
                key = (draft_name, gamma)
                batch1.setdefault(key, row["tokens_per_target_call"])
                row["tokens_per_target_call_vs_first_batch"] = (
                    row["tokens_per_target_call"] / batch1[key]
                )
                temperature_rows.append(row)
                print_row(row)
        # After the timings, so that the plain model's first call above is
        # its compile.
        distinct = output_distinct_4grams(target, prompts, args.max_length, seq2seq)
        log(f"T={temperature}: target outputs' distinct 4-gram ratio {distinct:.2f}")
        for row in temperature_rows:
            row["target_distinct_4grams"] = distinct
        rows += temperature_rows
        del models
    return rows


def profile_call(model, name, batch, args, temperature, batch_size):
    """Op seconds per call by phase of one configuration, from a profiler
    trace of `args.profile` calls on `batch` (`profiling.trace_phase_seconds`),
    and the rounds (target calls) or plain steps per traced call."""
    from keras_specdec import profiling

    log(f"T={temperature} batch {batch_size}: profiling {name}")
    has_stats = hasattr(model.sampler, "reset_stats")
    if has_stats:
        model.sampler.reset_stats()
    seconds = profiling.trace_phase_seconds(
        model,
        batch,
        calls=args.profile,
        stop_token_ids=None,
        max_length=args.max_length,
    )
    alpha = None
    if has_stats:  # the warm-up call and the traced ones
        stats = model.sampler.stats()
        rounds = stats["target_calls"] / (args.profile + 1)
        alpha = stats["acceptance_rate"]
    else:
        rounds = plain_steps(model, batch, args.max_length)
    return {"seconds": seconds, "rounds": float(rounds), "alpha": alpha}


def make_sampler_for_batch(args, temperature, draft_model, gamma, is_model, costs):
    """The sampler of one configuration. "auto" gets c and v measured at
    the first batch size (a sampler is built once per temperature)."""
    target_seconds, draft_seconds = costs[args.batch_sizes[0]]
    c = draft_seconds[1] / target_seconds[1] if is_model else 0.0
    verify_costs = {g: target_seconds[g + 1] / target_seconds[1] for g in args.gammas}
    return make_sampler(args, temperature, draft_model, gamma, c, verify_costs)


def make_sampler(args, temperature, draft_model, gamma, c, verify_costs):
    import keras_specdec

    if gamma in ("auto", "heuristic"):
        return keras_specdec.SpeculativeSampler(
            draft_model,
            "auto",
            base_sampler=base_sampler_for(temperature),
            seed=args.seed,
            max_speculative_tokens=max(args.gammas),
            gamma_schedule="theorem" if gamma == "auto" else "heuristic",
            cost_coefficient=c,
            verify_costs=verify_costs,
        )
    return keras_specdec.SpeculativeSampler(
        draft_model, gamma, base_sampler=base_sampler_for(temperature), seed=args.seed
    )


def interleaved_seconds(
    models, batches, max_length, repetitions, label="", warm_up=False
):
    """Seconds of every `generate()` call of each model (compiled already),
    timing all models in turn within each repetition (starting at a
    different model each time) over every batch: a list per model.
    `warm_up`: call each model once on the first batch before timing."""
    times = [[] for _ in models]
    if warm_up:
        for model in models:
            model.generate(batches[0], max_length=max_length, stop_token_ids=None)
    for repetition in range(repetitions):
        log(f"{label}: timing repetition {repetition + 1}/{repetitions}")
        for k in range(len(models)):
            i = (k + repetition) % len(models)
            for batch in batches:
                start = time.perf_counter()
                models[i].generate(batch, max_length=max_length, stop_token_ids=None)
                times[i].append(time.perf_counter() - start)
    return times


def result_row(
    *,
    pair,
    batch_size,
    max_length,
    draft,
    temperature,
    gamma,
    gammas,
    stats,
    model_draft,
    target_seconds,
    draft_seconds,
    base,
    speculative,
):
    """One Table-2 row: measured alpha and speedup next to Theorem 3.8's
    prediction, with and without the measured verify cost, and where a
    round's time goes.

    `target_seconds` / `draft_seconds`: `{chunk: seconds}` of one call inside
    a compiled loop at this batch size. `base` / `speculative`: dicts of
    `median` and `mean` seconds per call, `first_call` seconds, `fixed`
    seconds of a call that decodes nothing (prefill, dispatch, pre- and
    post-processing), and `steps` (plain) or `rounds` (speculative) per call.
    Fixed gammas use their own c and v; schedules ("auto", "heuristic") are
    compared with the theorem at the fixed gamma it prefers for their alpha.
    """
    from keras_specdec import analysis

    alpha = stats["acceptance_rate"]
    step = target_seconds[1]
    c = draft_seconds[1] / step if model_draft else 0.0

    def v(g):
        return target_seconds[g + 1] / step

    if isinstance(gamma, str):
        best_gamma = max(
            gammas,
            key=lambda g: analysis.expected_speedup_with_verify_cost(alpha, g, c, v(g)),
        )
    else:
        best_gamma = gamma
    predicted = analysis.expected_speedup(alpha, best_gamma, c)
    predicted_v = analysis.expected_speedup_with_verify_cost(
        alpha, best_gamma, c, v(best_gamma)
    )
    measured = base["median"] / speculative["median"]
    # Per-round breakdown: a round is gamma draft calls (the first re-feeds
    # one more token: a 2-token call) and a verify pass of gamma + 1 tokens;
    # "other" is the rest of the measured round (sampling, acceptance,
    # bookkeeping, buffer and cache copies). A round's time is the mean call
    # time minus the per-call cost (a call that decodes nothing), divided by
    # the rounds per call.
    rounds = speculative["rounds"]
    round_s = (speculative["mean"] - (speculative["fixed"] or 0.0)) / rounds
    plain_step_s = (base["mean"] - (base["fixed"] or 0.0)) / base["steps"]
    if isinstance(gamma, str):
        draft_s = verify_s = other_s = float("nan")
    else:
        draft_s = (
            draft_seconds[2] + (gamma - 1) * draft_seconds[1] if model_draft else 0.0
        )
        verify_s = target_seconds[gamma + 1]
        other_s = round_s - draft_s - verify_s
    return {
        "task": f"{pair} (batch {batch_size}, max_length {max_length})",
        "batch_size": batch_size,
        "max_length": max_length,
        "draft": draft,
        "temperature": temperature,
        "gamma": gamma,
        "alpha": alpha,
        "c": c,
        "tokens_per_target_call": stats["tokens_per_target_call"],
        "predicted_speedup": predicted,
        "measured_speedup": measured,
        "efficiency": measured / predicted,
        "verify_cost": v(best_gamma),
        "predicted_with_verify_cost": predicted_v,
        "efficiency_with_verify_cost": measured / predicted_v,
        "baseline_ms": base["median"] * 1000,
        "speculative_ms": speculative["median"] * 1000,
        # First call (trace + compile + one run) minus a timed call.
        "baseline_compile_s": base["first_call"] - base["median"],
        "speculative_compile_s": speculative["first_call"] - speculative["median"],
        "target_step_ms": step * 1000,
        "plain_step_ms": plain_step_s * 1000,
        "plain_other_ms": (plain_step_s - step) * 1000,
        "rounds_per_call": rounds,
        # None: not measured (encoder-decoders), counted in the round.
        "baseline_fixed_ms": _ms(base["fixed"]),
        "speculative_fixed_ms": _ms(speculative["fixed"]),
        "round_ms": round_s * 1000,
        "draft_ms": draft_s * 1000,
        "verify_ms": verify_s * 1000,
        "other_ms": other_s * 1000,
        **_profiled(alpha, gamma, model_draft, base, speculative),
    }


def _profiled(alpha, gamma, model_draft, base, speculative):
    """The row's profiled breakdown (`--profile`): ms per round of each
    phase inside the real program, per plain step of the target alone, and
    c, v and Theorem 3.8 from those in-program costs, against the traced
    calls' own speedup (walltime, tracing included in both) at their own
    alpha (the traced prompt batch's)."""
    from keras_specdec import analysis

    if not speculative.get("profile") or not base.get("profile"):
        return {}
    spec, plain = speculative["profile"], base["profile"]
    per_round = {
        k: v * 1000 / spec["rounds"]
        for k, v in spec["seconds"].items()
        if k not in ("walltime", "matched")
    }
    plain_step = plain["seconds"].get("loop", 0.0) * 1000 / plain["rounds"]
    alpha = spec.get("alpha", alpha)
    if isinstance(gamma, str) or not 0.0 <= alpha < 1.0:  # no single c, v
        c = v = predicted = float("nan")
    else:
        c = per_round.get("propose", 0.0) / gamma / plain_step if model_draft else 0
        v = per_round.get("verify", 0.0) / plain_step
        predicted = analysis.expected_speedup_with_verify_cost(alpha, gamma, c, v)
    measured = plain["seconds"]["walltime"] / spec["seconds"]["walltime"]
    # Theorem 3.8 plus the per-call setup (prefill, initial states) both
    # calls pay once, which the theorem leaves out: the plain call decodes
    # `plain["rounds"]` tokens at plain_step each.
    setup_plain = plain["seconds"].get("setup", 0.0) * 1000
    setup_spec = spec["seconds"].get("setup", 0.0) * 1000
    decode_plain = plain["rounds"] * plain_step
    predicted_setup = (setup_plain + decode_plain) / (
        setup_spec + decode_plain / predicted
    )
    # The round's model calls (draft steps, verify pass) against all of it.
    round_ms = sum(v for k, v in per_round.items() if k != "setup")
    model_calls = per_round.get("propose", 0.0) + per_round.get("verify", 0.0)
    return {
        "profiled_ms_per_round": per_round,
        "profiled_setup_ms": spec["seconds"].get("setup", 0.0) * 1000,
        "profiled_plain_step_ms": plain_step,
        "profiled_plain_setup_ms": plain["seconds"].get("setup", 0.0) * 1000,
        "profiled_matched": spec["seconds"]["matched"],
        "profiled_alpha": alpha,
        "profiled_c": c,
        "profiled_v": v,
        "profiled_model_call_share": model_calls / round_ms,
        "profiled_predicted": predicted,
        "profiled_measured": measured,
        "profiled_efficiency": measured / predicted,
        "profiled_predicted_with_setup": predicted_setup,
        "profiled_efficiency_with_setup": measured / predicted_setup,
    }


def _ms(seconds):
    return None if seconds is None else seconds * 1000


def print_row(r):
    print(
        f"T={r['temperature']} batch={r['batch_size']} draft={r['draft']} "
        f"gamma={r['gamma']} alpha={r['alpha']:.3f} c={r['c']:.3f} "
        f"tokens/row-call={r['tokens_per_target_call']:.2f} "
        f"predicted={r['predicted_speedup']:.2f}x "
        f"measured={r['measured_speedup']:.2f}x v={r['verify_cost']:.2f} "
        f"predicted_v={r['predicted_with_verify_cost']:.2f}x "
        f"efficiency_v={r['efficiency_with_verify_cost']:.2f} "
        f"base={r['baseline_ms']:.1f}ms spec={r['speculative_ms']:.1f}ms "
        f"round={r['round_ms']:.2f}ms (draft {r['draft_ms']:.2f} + verify "
        f"{r['verify_ms']:.2f} + other {r['other_ms']:.2f}) "
        f"compile={r['speculative_compile_s']:.1f}s",
        flush=True,
    )


def _is_schedule(r):
    return isinstance(r["gamma"], str)


def _fmt(x, spec=".2f"):
    return (
        "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:{spec}}"
    )


def to_markdown(rows, command):
    lines = [
        f"Measured with `{command}`.",
        "",
        "| task | draft | T | gamma | alpha | c | tokens/row-call | Thm 3.8 "
        "predicted | measured | efficiency | v | predicted with v | efficiency "
        "with v | compile s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['task']} | {r['draft']} | {r['temperature']} | {r['gamma']} | "
            f"{r['alpha']:.3f} | {r['c']:.3f} | {r['tokens_per_target_call']:.2f} | "
            f"{r['predicted_speedup']:.2f}x | {r['measured_speedup']:.2f}x | "
            f"{r['efficiency']:.2f} | {r['verify_cost']:.2f} | "
            f"{r['predicted_with_verify_cost']:.2f}x | "
            f"{r['efficiency_with_verify_cost']:.2f} | "
            f"{r['speculative_compile_s']:.1f} |"
        )
    lines += [
        "",
        "v = time(gamma + 1 token verification pass) / time(one target step), "
        "measured inside a compiled loop at the row's batch size; Theorem 3.8 "
        "assumes v = 1 (free parallel scoring, as on TPUs); 'predicted with v' "
        "divides by gamma c + v instead of gamma c + 1. tokens/row-call = new "
        "tokens per row per target call. compile s = first call minus a timed "
        "call (trace and XLA compile).",
    ]
    lines += _compile_table(rows)
    lines += _breakdown_table(rows)
    lines += _batch_table(rows)
    distinct = {
        r["temperature"]: r["target_distinct_4grams"]
        for r in rows
        if "target_distinct_4grams" in r
    }
    if distinct:
        lines += [
            "",
            "Target outputs (target alone, same prompts): distinct 4-gram ratio "
            + ", ".join(f"{v:.2f} at T={t}" for t, v in distinct.items())
            + " (1 = no repeated 4-gram; degenerate loops inflate alpha).",
        ]
    lines += [
        "",
        "Table 3 analogue (alpha by draft kind, mean over its gammas):",
        "",
        "| draft | T=0 | T=1 |",
        "|---|---|---|",
    ]
    for draft in dict.fromkeys(r["draft"] for r in rows):
        cells = []
        for t in (0, 1):
            alphas = [
                r["alpha"]
                for r in rows
                if r["draft"] == draft and r["temperature"] == t and not _is_schedule(r)
            ]
            cells.append(f"{sum(alphas) / len(alphas):.3f}" if alphas else "-")
        lines.append(f"| {draft} | {cells[0]} | {cells[1]} |")
    schedule_rows = [r for r in rows if _is_schedule(r)]
    if schedule_rows:
        lines += [
            "",
            "Adaptive gamma vs the best fixed gamma (same draft, same run):",
            "",
            "| T | batch | best fixed gamma | its speedup | schedule | speedup "
            "| ratio to best fixed |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in schedule_rows:
            fixed = [
                f
                for f in rows
                if f["draft"] == r["draft"]
                and f["temperature"] == r["temperature"]
                and f["batch_size"] == r["batch_size"]
                and not _is_schedule(f)
            ]
            if not fixed:
                continue
            best = max(fixed, key=lambda f: f["measured_speedup"])
            lines.append(
                f"| {r['temperature']} | {r['batch_size']} | {best['gamma']} | "
                f"{best['measured_speedup']:.2f}x | {r['gamma']} | "
                f"{r['measured_speedup']:.2f}x | "
                f"{r['measured_speedup'] / best['measured_speedup']:.3f} |"
            )
    return "\n".join(lines) + "\n"


def _model_draft_rows(rows):
    """Rows of the pair's own draft model (the first draft in the run)."""
    return [r for r in rows if r["draft"] == rows[0]["draft"]]


def _compile_table(rows):
    """Compile seconds of the target alone, each fixed gamma and each
    schedule, per temperature and batch size, and schedule / largest fixed
    gamma (the schedules' `max_speculative_tokens`)."""
    sel = _model_draft_rows(rows)
    gammas = list(dict.fromkeys(r["gamma"] for r in sel))
    fixed = [g for g in gammas if not isinstance(g, str)]
    schedules = [g for g in gammas if isinstance(g, str)]
    header = ["T", "batch", "target alone"]
    header += [g if isinstance(g, str) else f"gamma {g}" for g in gammas]
    header += [f"{s} / gamma {max(fixed)}" for s in schedules if fixed]
    lines = [
        "",
        f"Compile time (s, first call minus a timed call; draft {rows[0]['draft']}):",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    for key in dict.fromkeys((r["temperature"], r["batch_size"]) for r in sel):
        group = {
            r["gamma"]: r for r in sel if (r["temperature"], r["batch_size"]) == key
        }
        cells = [
            str(key[0]),
            str(key[1]),
            f"{group[gammas[0]]['baseline_compile_s']:.1f}",
        ]
        cells += [
            f"{group[g]['speculative_compile_s']:.1f}" if g in group else "-"
            for g in gammas
        ]
        if fixed:
            largest = group.get(max(fixed))
            for s in schedules:
                if largest and s in group and largest["speculative_compile_s"] > 0:
                    ratio = (
                        group[s]["speculative_compile_s"]
                        / largest["speculative_compile_s"]
                    )
                    cells.append(f"{ratio:.2f}x")
                else:
                    cells.append("-")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _breakdown_table(rows):
    lines = [
        "",
        "Where a round's time goes (ms; draft = gamma draft calls, the first "
        "of 2 tokens; verify = one gamma + 1 token target pass; both timed "
        "inside compiled loops; round = (mean call - per-call cost) / rounds "
        "per call, per-call cost = a call whose prompt fills max_length, so "
        "it decodes nothing (encoder-decoders: not measurable, left in the "
        "round); other = round - draft - verify: sampling, "
        "acceptance, bookkeeping, buffer and cache copies; model-free drafts' "
        "proposals are counted in other):",
        "",
        "| T | batch | draft | gamma | rounds/call | round | draft | verify | "
        "other | other / round | other / target step | efficiency with v |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if _is_schedule(r):
            continue
        lines.append(
            f"| {r['temperature']} | {r['batch_size']} | {r['draft']} | "
            f"{r['gamma']} | {r['rounds_per_call']:.1f} | {r['round_ms']:.2f} | "
            f"{r['draft_ms']:.2f} | {r['verify_ms']:.2f} | {r['other_ms']:.2f} | "
            f"{r['other_ms'] / r['round_ms']:.2f} | "
            f"{r['other_ms'] / r['target_step_ms']:.2f} | "
            f"{r['efficiency_with_verify_cost']:.2f} |"
        )
    lines += _profiled_table(rows)
    lines += ["", "Target alone, per decoding step (ms):", ""]
    lines += [
        "| T | batch | step | target step | other | per-call cost plain "
        "| per-call cost speculative (first draft row) |",
        "|---|---|---|---|---|---|---|",
    ]
    for key in dict.fromkeys((r["temperature"], r["batch_size"]) for r in rows):
        r = next(x for x in rows if (x["temperature"], x["batch_size"]) == key)
        lines.append(
            f"| {key[0]} | {key[1]} | {r['plain_step_ms']:.2f} | "
            f"{r['target_step_ms']:.2f} | {r['plain_other_ms']:.2f} | "
            f"{_fmt(r['baseline_fixed_ms'], '.1f')} | "
            f"{_fmt(r['speculative_fixed_ms'], '.1f')} |"
        )
    return lines


def _profiled_table(rows):
    rows = [r for r in rows if "profiled_ms_per_round" in r]
    if not rows:
        return []
    lines = [
        "",
        "Inside the real program (`--profile`: a profiler trace of generate() "
        "on the first prompt batch, each XLA op's time given to the round "
        "phase whose code emitted it, `keras_specdec.profiling`; ms of op "
        "time per round; plain step = the target alone's decoding loop per "
        "step; setup = per call: prefill, initial states, output; model "
        "calls = (propose + verify) / round; c and v from these in-program "
        "times; alpha and measured = the traced calls' own (that prompt "
        "batch, tracing in both walltimes); efficiency = measured / Theorem "
        "3.8 with alpha, c and v; + setup: the theorem's decoding time plus "
        "each call's setup, which the theorem leaves out):",
        "",
        "| T | batch | draft | gamma | propose | verify | accept | commit | "
        "rest of loop | round | model calls | plain step | setup spec / plain "
        "| alpha | c | v | Thm 3.8 with them | measured | efficiency | "
        "Thm 3.8 + setup | efficiency + setup |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
        "---|---|",
    ]
    for r in rows:
        p = r["profiled_ms_per_round"]
        total = sum(v for k, v in p.items() if k != "setup")
        lines.append(
            f"| {r['temperature']} | {r['batch_size']} | {r['draft']} | "
            f"{r['gamma']} | {p.get('propose', 0):.2f} | {p.get('verify', 0):.2f} | "
            f"{p.get('accept', 0):.2f} | {p.get('commit', 0):.2f} | "
            f"{p.get('loop', 0) + p.get('unknown', 0):.2f} | {total:.2f} | "
            f"{r['profiled_model_call_share']:.3f} | "
            f"{r['profiled_plain_step_ms']:.2f} | "
            f"{r['profiled_setup_ms']:.1f} / {r['profiled_plain_setup_ms']:.1f} | "
            f"{r['profiled_alpha']:.3f} | "
            f"{r['profiled_c']:.3f} | {r['profiled_v']:.2f} | "
            f"{r['profiled_predicted']:.2f}x | {r['profiled_measured']:.2f}x | "
            f"{r['profiled_efficiency']:.2f} | "
            f"{r['profiled_predicted_with_setup']:.2f}x | "
            f"{r['profiled_efficiency_with_setup']:.2f} |"
        )
    return lines


def _batch_table(rows):
    batch_sizes = sorted({r["batch_size"] for r in rows})
    if len(batch_sizes) < 2:
        return []
    lines = [
        "",
        f"Batches (rows cycle through the held-out prompts; 'vs batch "
        f"{batch_sizes[0]}' = tokens/row-call over the same configuration's "
        f"at batch {batch_sizes[0]}; v and c measured at each batch size):",
        "",
        "| T | draft | gamma | batch | tokens/row-call | vs batch "
        f"{batch_sizes[0]} | alpha | c | v | predicted with v | speedup | "
        "target alone ms | speculative ms |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    ordered = sorted(
        rows,
        key=lambda r: (
            r["temperature"],
            list(dict.fromkeys(x["draft"] for x in rows)).index(r["draft"]),
            str(r["gamma"]) if _is_schedule(r) else f"{r['gamma']:04d}",
            r["batch_size"],
        ),
    )
    for r in ordered:
        lines.append(
            f"| {r['temperature']} | {r['draft']} | {r['gamma']} | "
            f"{r['batch_size']} | {r['tokens_per_target_call']:.2f} | "
            f"{r['tokens_per_target_call_vs_first_batch']:.3f} | "
            f"{r['alpha']:.3f} | {r['c']:.3f} | {r['verify_cost']:.2f} | "
            f"{r['predicted_with_verify_cost']:.2f}x | "
            f"{r['measured_speedup']:.2f}x | {r['baseline_ms']:.1f} | "
            f"{r['speculative_ms']:.1f} |"
        )
    return lines


def plot(rows, out_dir):
    """PNG plots; returns the file names written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from keras_specdec import analysis

    sel_all = _model_draft_rows(rows)
    draft_name = rows[0]["draft"]
    pair = rows[0]["task"].split(" (")[0]
    max_length = rows[0]["max_length"]
    temperatures = sorted({r["temperature"] for r in rows})
    colours = {t: f"C{i}" for i, t in enumerate(temperatures)}
    batch_sizes = sorted({r["batch_size"] for r in rows})
    written = []
    for batch_size in batch_sizes:
        suffix = "" if batch_size == batch_sizes[0] else f"_batch{batch_size}"
        sel_b = [r for r in sel_all if r["batch_size"] == batch_size]
        fixed_gammas = sorted({r["gamma"] for r in sel_b if not _is_schedule(r)})
        schedules = list(dict.fromkeys(r["gamma"] for r in sel_b if _is_schedule(r)))
        if not fixed_gammas:
            continue
        schedule_x = {s: max(fixed_gammas) + 1.5 + i for i, s in enumerate(schedules)}
        # Speedup against gamma.
        fig, ax = plt.subplots(figsize=(7.5, 4.8))
        ax.axhline(1.0, color="0.5", ls="--", lw=1, label="target alone (1.0)")
        for t in temperatures:
            colour = colours[t]
            sel = [r for r in sel_b if r["temperature"] == t and not _is_schedule(r)]
            if not sel:
                continue
            g = [r["gamma"] for r in sel]
            ax.plot(
                g, [r["measured_speedup"] for r in sel], "o", color=colour, ms=7,
                label=f"T={t}: measured",
            )  # fmt: skip
            ax.plot(
                g, [r["predicted_with_verify_cost"] for r in sel], "-",
                color=colour, label=f"T={t}: Theorem 3.8 with measured v",
            )  # fmt: skip
            alpha = float(np.mean([r["alpha"] for r in sel]))
            grid = np.arange(1, max(g) + 1)
            ax.plot(
                grid,
                [analysis.expected_speedup(alpha, k, sel[0]["c"]) for k in grid],
                ":", color=colour, alpha=0.7,
                label=f"T={t}: Theorem 3.8, v=1 (alpha {alpha:.2f}, "
                f"c {sel[0]['c']:.3f})",
            )  # fmt: skip
            for r in sel_b:
                if r["temperature"] == t and _is_schedule(r):
                    marker = "*" if r["gamma"] == "auto" else "X"
                    ax.plot(
                        schedule_x[r["gamma"]], r["measured_speedup"], marker,
                        color=colour, ms=11, mec="k",
                        label=f"T={t}: {r['gamma']} schedule",
                    )  # fmt: skip
        ticks = fixed_gammas + [schedule_x[s] for s in schedules]
        ax.set_xticks(ticks, [str(g) for g in fixed_gammas] + schedules)
        ax.set_xlabel("gamma (num_speculative_tokens), then adaptive schedules")
        ax.set_ylabel("speedup over the target alone (walltime)")
        ax.set_ylim(bottom=0)
        ax.set_title(
            f"{pair}: speculative decoding with {draft_name}\n"
            f"batch {batch_size}, max_length {max_length}"
        )
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
        fig.tight_layout()
        name = f"speedup_vs_gamma{suffix}.png"
        fig.savefig(os.path.join(out_dir, name), dpi=100)
        plt.close(fig)
        written.append(name)
        # Acceptance rate against gamma.
        fig, ax = plt.subplots(figsize=(6.5, 4.2))
        for t in temperatures:
            sel = [r for r in sel_b if r["temperature"] == t and not _is_schedule(r)]
            if sel:
                ax.plot(
                    [r["gamma"] for r in sel], [r["alpha"] for r in sel], "o-",
                    color=colours[t], label=f"T={t}",
                )  # fmt: skip
        ax.set_ylim(0, 1.02)
        ax.set_xticks(fixed_gammas)
        ax.set_xlabel("gamma (num_speculative_tokens)")
        ax.set_ylabel("acceptance rate alpha (accepted / judged)")
        ax.set_title(
            f"{pair}: acceptance of {draft_name}\n"
            f"batch {batch_size}, max_length {max_length}"
        )
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        name = f"alpha_vs_gamma{suffix}.png"
        fig.savefig(os.path.join(out_dir, name), dpi=100)
        plt.close(fig)
        written.append(name)
    if len(batch_sizes) > 1:
        fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
        markers = "osD^vP*X"
        gammas = list(dict.fromkeys(r["gamma"] for r in sel_all))
        for t in temperatures:
            for k, g in enumerate(gammas):
                sel = [r for r in sel_all if r["temperature"] == t and r["gamma"] == g]
                if not sel:
                    continue
                b = [r["batch_size"] for r in sel]
                style = dict(color=colours[t], marker=markers[k % len(markers)])
                axes[0].plot(
                    b, [r["measured_speedup"] for r in sel], **style,
                    label=f"T={t}, gamma {g}",
                )  # fmt: skip
                axes[1].plot(b, [r["tokens_per_target_call"] for r in sel], **style)
        axes[0].axhline(1.0, color="0.5", ls="--", lw=1, label="target alone (1.0)")
        axes[0].set_ylabel("speedup over the target alone (walltime)")
        axes[1].set_ylabel("new tokens per row per target call")
        for ax in axes:
            ax.set_xscale("log", base=2)
            ax.set_xticks(batch_sizes, [str(b) for b in batch_sizes])
            ax.set_xlabel("batch size")
            ax.set_ylim(bottom=0)
            ax.grid(alpha=0.3)
        axes[0].legend(fontsize=7)
        fig.suptitle(
            f"{pair}: speculative decoding with {draft_name} against batch size, "
            f"max_length {max_length}"
        )
        fig.tight_layout()
        fig.savefig(os.path.join(out_dir, "speedup_vs_batch.png"), dpi=100)
        plt.close(fig)
        written.append("speedup_vs_batch.png")
    return written


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Appends "(default: ...)" to each option's help, except where the
    default is None (the help text says what happens then)."""

    def _get_help_string(self, action):
        if action.default is None:
            return action.help
        return super()._get_help_string(action)


def build_parser():
    parser = argparse.ArgumentParser(
        prog="python -m keras_specdec.benchmark",
        description=(
            "Time generate() of a target model alone and with speculative "
            "decoding on a shipped (or local) target/draft pair, next to "
            "Theorem 3.8 of Leviathan et al. (2023). Writes results.json, "
            "results.md and PNG plots into --out."
        ),
        formatter_class=_HelpFormatter,
    )
    parser.add_argument(
        "--pair",
        default="code",
        help="The shipped pair to benchmark ('code' or 'ende'), or the path of "
        "a directory laid out like one (target/, draft/, prompts).",
    )
    parser.add_argument(
        "--profile",
        type=int,
        default=0,
        metavar="CALLS",
        help="Also trace CALLS generate() calls of each configuration with "
        "the JAX profiler (first prompt batch) and report where a round's "
        "time goes inside the real program (CPU; 0: off).",
    )
    parser.add_argument(
        "--gammas",
        type=int,
        nargs="+",
        default=[1, 2, 3, 4, 5, 6],
        help="The fixed numbers of draft tokens per round (gamma) to time.",
    )
    parser.add_argument(
        "--temperatures",
        type=float,
        nargs="+",
        default=[0, 1],
        help="Sampling temperatures; 0 means greedy decoding.",
    )
    parser.add_argument(
        "--batch-sizes",
        type=int,
        nargs="+",
        default=[1],
        help="Rows per generate() call. Batch B uses ceil(N / B) batches of "
        "the N prompts (at least one); row r of batch j holds prompt "
        "(j * B + r) mod N.",
    )
    parser.add_argument(
        "--max-length",
        type=int,
        default=128,
        help="The sequence length every call generates to (prompt included); "
        "stop tokens are ignored, so every call does fixed work.",
    )
    parser.add_argument(
        "--prompt-tokens",
        type=int,
        default=64,
        help="Causal pairs: each prompt is cut to its first this many tokens.",
    )
    parser.add_argument(
        "--num-prompts",
        type=int,
        default=None,
        help="Use only the first this many held-out prompts (default: all).",
    )
    parser.add_argument(
        "--repetitions",
        type=int,
        default=3,
        help="Timed passes over all prompts per configuration; the median "
        "call time is reported.",
    )
    parser.add_argument(
        "--cost-repetitions",
        type=int,
        default=30,
        help="Repetitions of the compiled-loop timing of target steps, verify "
        "passes and draft steps (c and v) per batch size.",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="Seed of the speculative samplers."
    )
    parser.add_argument(
        "--schedules",
        nargs="*",
        default=[],
        choices=["auto", "heuristic"],
        help="Adaptive gamma schedules to time next to the fixed gammas, with "
        "max_speculative_tokens = max(--gammas): 'auto' is the Theorem 3.8 "
        "schedule with the measured c and v, 'heuristic' is HF's +2/-1 rule.",
    )
    parser.add_argument(
        "--model-free-drafts",
        nargs="*",
        default=[],
        choices=["unigram", "bigram", "prompt_lookup"],
        help="Model-free drafts to time as well (their cost c is taken as 0).",
    )
    parser.add_argument(
        "--model-free-gammas",
        type=int,
        nargs="+",
        default=[2, 4],
        help="The gammas at which the model-free drafts are timed.",
    )
    parser.add_argument(
        "--fit-files",
        type=int,
        default=150,
        help="Python standard library files the unigram and bigram drafts are "
        "fitted on.",
    )
    parser.add_argument(
        "--out",
        default=None,
        help="Directory for results.json, results.md and the plots; files "
        "there are overwritten. Default: a new folder "
        f"{DEFAULT_OUT_ROOT}/<pair>-<date>-<time> under the current "
        "directory, so a run never overwrites the results shipped in "
        "benchmarks/.",
    )
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    args.temperatures = [int(t) if t == int(t) else t for t in args.temperatures]
    for name in ("gammas", "model_free_gammas", "batch_sizes"):
        if min(getattr(args, name)) < 1:
            parser.error(f"--{name.replace('_', '-')} must all be >= 1.")
    if args.out is None:
        pair_name = os.path.basename(os.path.normpath(args.pair))
        args.out = os.path.join(
            DEFAULT_OUT_ROOT, f"{pair_name}-{time.strftime('%Y%m%d-%H%M%S')}"
        )
    os.makedirs(args.out, exist_ok=True)
    log(f"results will be written to {args.out}/")
    rows = run(args)
    command = "python -m keras_specdec.benchmark " + " ".join(
        argv if argv is not None else sys.argv[1:]
    )
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump({"command": command, "rows": rows}, f, indent=1)
    markdown = to_markdown(rows, command.strip())
    with open(os.path.join(args.out, "results.md"), "w") as f:
        f.write(markdown)
    plots = plot(rows, args.out)
    print(markdown)
    log(f"wrote results.json, results.md, {', '.join(plots)} to {args.out}/")
    return rows


if __name__ == "__main__":
    main()
