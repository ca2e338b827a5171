"""Running the benchmark: the workload, the cost measurements, the timings.

`run(args)` loads the pair, measures c and v inside compiled loops, then per
temperature compiles one target per configuration (target alone, each gamma,
each schedule, each model-free draft) and times them in turn
(`interleaved_seconds`); `report.result_row` turns the timings into a row.
The options are those of `keras_specdec.bench.cli.build_parser`.
"""

import math
import os
import time

from keras_specdec.bench.report import print_row, result_row

_START = time.perf_counter()


def log(message):
    """Progress line with the seconds since the run started (flushed)."""
    print(f"[{time.perf_counter() - _START:7.1f}s] {message}", flush=True)


def base_sampler_for(temperature, seed=0):
    """KerasHub's greedy sampler for temperature 0, else its random sampler."""
    import keras_hub

    if temperature == 0:
        return keras_hub.samplers.GreedySampler()
    return keras_hub.samplers.RandomSampler(temperature=temperature, seed=seed)


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


def prompt_token_ids(model, prompts, max_length):
    """The prompts as `generate()` feeds them to a causal LM (start token
    included): one list of ids per prompt."""
    import numpy as np

    x = model.preprocessor.generate_preprocess(prompts, sequence_length=max_length)
    return [
        [int(t) for t, m in zip(row, mask) if m]
        for row, mask in zip(np.asarray(x["token_ids"]), np.asarray(x["padding_mask"]))
    ]


def token_inputs(batch_token_ids, max_length):
    """A right-padded batch of token-id prompts (ragged rows), as
    `generate()` takes it without a preprocessor."""
    import numpy as np

    x = np.zeros((len(batch_token_ids), max_length), "int32")
    mask = np.zeros((len(batch_token_ids), max_length), bool)
    for row, token_ids in enumerate(batch_token_ids):
        x[row, : len(token_ids)] = token_ids
        mask[row, : len(token_ids)] = True
    return {"token_ids": x, "padding_mask": mask}


def write_prompts(args):
    """`--write-prompts`: the pair's held-out prompts (cut as the benchmark
    cuts them) as token ids in a JSON file, for `--prompts` on a machine
    without the tokenizer (TensorFlow text)."""
    import json

    import keras_specdec

    target, _ = keras_specdec.pairs.load(args.pair)
    prompts = keras_specdec.pairs.benchmark_prompts(args.pair)[: args.num_prompts]
    prompts = truncate_prompts(target, prompts, args.prompt_tokens)
    ids = prompt_token_ids(target, prompts, args.max_length)
    with open(args.write_prompts, "w") as f:
        json.dump({"prompts": prompts, "token_ids": ids}, f)
    log(f"wrote {len(ids)} prompts ({[len(i) for i in ids]} tokens) to "
        f"{args.write_prompts}")  # fmt: skip


class Workload:
    """The pair and prompts of a run, and how `generate()` takes them.

    Text prompts (the default) go through the pair's preprocessor: the pair's
    held-out prompts, causal ones cut to `--prompt-tokens` tokens. With
    `--prompts FILE` (written by `--write-prompts`) the prompts are token
    ids and the models are built from the pair's backbones without a
    preprocessor: no tokenizer, so no TensorFlow (GPU machines with JAX and
    Keras only). `--target-weights` / `--draft-weights` load backbone weights
    (e.g. `best.weights.h5` of scripts/training/train_causal.py) into either.
    """

    def __init__(self, args):
        import json

        import keras_specdec

        self.args = args
        self.name = os.path.basename(os.path.normpath(args.pair))
        self.seq2seq = keras_specdec.pairs.is_seq2seq(
            keras_specdec.pairs.path(args.pair, "target")
        )
        self.token_ids = args.prompts is not None
        log(f"loading pair {args.pair!r}")
        self.target = self.load("target")
        self.draft = self.load("draft")
        if self.token_ids:
            with open(args.prompts) as f:
                ids = json.load(f)["token_ids"][: args.num_prompts]
            # The start token and the first --prompt-tokens tokens, as the
            # preprocessor feeds a text prompt cut to --prompt-tokens.
            self.prompts = [t[: args.prompt_tokens + 1] for t in ids]
            return
        # Held-out prompts: source sentences of the test split (encoder-
        # decoder pairs) or function openings from files never trained on.
        prompts = keras_specdec.pairs.benchmark_prompts(args.pair)[: args.num_prompts]
        if not self.seq2seq:
            prompts = truncate_prompts(self.target, prompts, args.prompt_tokens)
        self.prompts = prompts

    def load(self, role):
        """A fresh target or draft model of the pair (with its weights)."""
        import keras_hub

        import keras_specdec

        weights = getattr(self.args, f"{role}_weights")
        if self.token_ids:
            model = keras_hub.models.CausalLM.from_preset(
                keras_specdec.pairs.path(self.args.pair, role), preprocessor=None
            )
        elif role == "draft" and getattr(self.args, "draft", "model") == "head":
            model = keras_specdec.pairs.load(self.args.pair, draft="head")[1]
        else:
            model = keras_specdec.pairs.load(self.args.pair)[role == "draft"]
        if weights:  # backbone weights (best.weights.h5 of the training scripts)
            model.backbone.load_weights(weights)
        return model

    def batches(self, batch_size):
        """`generate()` inputs of `prompt_batches(prompts, batch_size)`."""
        batches = prompt_batches(self.prompts, batch_size)
        if self.token_ids:
            return [token_inputs(b, self.args.max_length) for b in batches]
        return batches

    def plain_steps(self, batch):
        """Target calls of plain `generate()` on `batch`: KerasHub's loop runs
        from the shortest row's prompt length to `max_length`."""
        import numpy as np

        x = batch
        if not self.token_ids:
            x = self.target.preprocessor.generate_preprocess(
                batch, sequence_length=self.args.max_length
            )
        mask = np.asarray(x.get("padding_mask", x.get("decoder_padding_mask")))
        return self.args.max_length - int(mask.sum(axis=1).min())

    def full_batch(self, batch_size):
        """A batch whose prompts fill all `max_length` positions:
        `generate()` on it runs the prefill, dispatch and pre/post-processing
        of a call but no decoding step (its loop starts at max_length), the
        per-call cost that a call pays besides its rounds. None for
        encoder-decoders (the decoder prompt is always just the start
        token)."""
        import numpy as np

        max_length = self.args.max_length
        if self.seq2seq:
            return None
        if self.token_ids:
            ids = [t for prompt in self.prompts for t in prompt]
            while len(ids) < max_length:
                ids = ids + ids
            return token_inputs([ids[:max_length]] * batch_size, max_length)
        tokenizer = self.target.preprocessor.tokenizer
        text = "\n".join(self.prompts)
        while len(np.asarray(tokenizer(text)).ravel()) < max_length:
            text = text + "\n" + text
        return [text] * batch_size

    def distinct_4grams(self, model):
        """Mean over prompts of distinct / all 4-grams of the generated token
        ids (1.0: no 4-gram repeats; degenerate loops score low and make
        drafts agree easily, inflating alpha)."""
        import numpy as np

        ratios = []
        for prompt in self.prompts:
            ids = self._generated_ids(model, prompt)
            grams = [tuple(ids[i : i + 4]) for i in range(len(ids) - 3)]
            if grams:
                ratios.append(len(set(grams)) / len(grams))
        return float(np.mean(ratios)) if ratios else float("nan")

    def _generated_ids(self, model, prompt):
        import numpy as np

        max_length = self.args.max_length
        if self.token_ids:
            out = model.generate(
                token_inputs([prompt], max_length), stop_token_ids=None
            )
            return [int(i) for i in np.asarray(out["token_ids"])[0][len(prompt) :]]
        text = model.generate(prompt, max_length=max_length, stop_token_ids=None)
        generated = text if self.seq2seq else text[len(prompt) :]
        tokenizer = model.preprocessor.tokenizer
        return [int(i) for i in np.asarray(tokenizer(generated)).ravel()]


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
    """`{name: draft}` of `--model-free-drafts` (unigram and bigram fitted on
    `--fit-files` standard library files with the target's tokenizer)."""
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
        log(f"fitted unigram/bigram drafts on {tokens.size:,} stdlib tokens")
    return fitted


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


def run(args, on_rows=None):
    """All rows of the run `args` describes (see `cli.build_parser`).

    `on_rows(rows)`, if given, is called with the rows so far after each
    temperature (so that partial results survive a run cut short).
    """
    work = Workload(args)
    all_gammas = sorted(
        set(args.gammas + (args.model_free_gammas if args.model_free_drafts else []))
    )
    costs = {
        b: measure_costs(work.target, work.draft, all_gammas, b, args)
        for b in args.batch_sizes
    }
    fitted = fit_model_free_drafts(work.target, args)
    rows = []
    for temperature in args.temperatures:
        configs = [
            (f"{work.name}/{getattr(args, 'draft', 'model')}", work.draft, g)
            for g in args.gammas
        ]
        configs += [
            (f"{work.name}/{getattr(args, 'draft', 'model')}", work.draft, s)
            for s in args.schedules
        ]
        configs += [
            (name, fitted[name], g)
            for name in args.model_free_drafts
            for g in args.model_free_gammas
        ]
        # One target instance per sampler, each compiled once per batch
        # shape; then every repetition times all of them in turn, so that
        # drift of this machine's speed (20% over minutes here) moves
        # baseline and speculative timings together instead of biasing a
        # ratio.
        work.target.compile(sampler=base_sampler_for(temperature))
        models = [work.target]
        for _, draft_model, gamma in configs:
            model = work.load("target")
            sampler = make_sampler_for_batch(
                args, temperature, draft_model, gamma, draft_model is work.draft, costs
            )
            model.compile(sampler=sampler)
            models.append(model)
        batch1, temperature_rows = {}, []
        for batch_size in args.batch_sizes:
            for row in time_configurations(
                work, models, configs, temperature, batch_size, costs[batch_size]
            ):
                key = (row["draft"], row["gamma"])
                batch1.setdefault(key, row["tokens_per_target_call"])
                row["tokens_per_target_call_vs_first_batch"] = (
                    row["tokens_per_target_call"] / batch1[key]
                )
                temperature_rows.append(row)
        # After the timings, so that the plain model's first call above is
        # its compile.
        distinct = work.distinct_4grams(work.target)
        log(f"T={temperature}: target outputs' distinct 4-gram ratio {distinct:.2f}")
        for row in temperature_rows:
            row["target_distinct_4grams"] = distinct
        rows += temperature_rows
        del models
        if on_rows is not None:
            on_rows(rows)
    return rows


def time_configurations(work, models, configs, temperature, batch_size, costs):
    """The rows of one temperature and batch size: first calls (compile),
    interleaved timings, the per-call cost, optional profiles."""
    import numpy as np

    args = work.args
    names = ["target alone"] + [f"{d} gamma={g}" for d, _, g in configs]
    label = f"T={temperature} batch {batch_size}"
    target_seconds, draft_seconds = costs
    batches = work.batches(batch_size)
    first_call = []
    for model, name in zip(models, names):
        log(f"{label}: compiling {name} (first call)")
        start = time.perf_counter()
        generate(model, batches[0], args.max_length)
        first_call.append(time.perf_counter() - start)
        _reset_stats(model)
    times = interleaved_seconds(
        models, batches, args.max_length, args.repetitions, label=label
    )
    stats = [m.sampler.stats() if hasattr(m.sampler, "stats") else None for m in models]
    full = work.full_batch(batch_size)
    fixed = [None] * len(models)  # not measurable: see Workload.full_batch
    if full is not None:
        fixed = interleaved_seconds(
            models, [full], args.max_length, args.repetitions,
            label=f"{label} per-call cost", warm_up=True,
        )  # fmt: skip
        fixed = [float(np.median(t)) for t in fixed]
    profiles = [None] * len(models)
    if args.profile:
        profiles = [
            profile_call(work, model, name, batches[0], label)
            for model, name in zip(models, names)
        ]
    for m in models:
        _reset_stats(m)
    calls = args.repetitions * len(batches)
    steps = np.mean([work.plain_steps(b) for b in batches])
    base = {
        "median": float(np.median(times[0])),
        "mean": float(np.mean(times[0])),
        "first_call": first_call[0],
        "fixed": fixed[0],
        "steps": float(steps),
        "profile": profiles[0],
    }
    rows = []
    for i, (draft_name, draft_model, gamma) in enumerate(configs, start=1):
        row = result_row(
            pair=work.name,
            batch_size=batch_size,
            max_length=args.max_length,
            draft=draft_name,
            temperature=temperature,
            gamma=gamma,
            gammas=args.gammas,
            stats=stats[i],
            model_draft=draft_model is work.draft,
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
        print_row(row)
        rows.append(row)
    return rows


def _reset_stats(model):
    if hasattr(model.sampler, "reset_stats"):
        model.sampler.reset_stats()


def profile_call(work, model, name, batch, label):
    """Op seconds per call by phase of one configuration, from a profiler
    trace of `--profile` calls on `batch` (`profiling.trace_phase_seconds`),
    and the rounds (target calls) or plain steps per traced call."""
    from keras_specdec.bench import profiling

    args = work.args
    log(f"{label}: profiling {name}")
    _reset_stats(model)
    seconds = profiling.trace_phase_seconds(
        model,
        batch,
        calls=args.profile,
        stop_token_ids=None,
        max_length=args.max_length,
    )
    alpha = None
    if hasattr(model.sampler, "stats"):  # the warm-up call and the traced ones
        stats = model.sampler.stats()
        rounds = stats["target_calls"] / (args.profile + 1)
        alpha = stats["acceptance_rate"]
    else:
        rounds = work.plain_steps(batch)
    return {"seconds": seconds, "rounds": float(rounds), "alpha": alpha}


def make_sampler_for_batch(args, temperature, draft_model, gamma, is_model, costs):
    """The sampler of one configuration. "auto" gets c and v measured at
    the first batch size (a sampler is built once per temperature)."""
    target_seconds, draft_seconds = costs[args.batch_sizes[0]]
    c = draft_seconds[1] / target_seconds[1] if is_model else 0.0
    verify_costs = {g: target_seconds[g + 1] / target_seconds[1] for g in args.gammas}
    return make_sampler(args, temperature, draft_model, gamma, c, verify_costs)


def make_sampler(args, temperature, draft_model, gamma, c, verify_costs):
    """`SpeculativeSampler` at a fixed gamma, or for "auto" / "heuristic"
    the adaptive schedule up to `max(--gammas)` with the measured c and v."""
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


def generate(model, batch, max_length):
    """One `generate()` call of fixed work (stop tokens off), waited for
    (without a preprocessor the output is a device array)."""
    import jax

    return jax.block_until_ready(
        model.generate(batch, max_length=max_length, stop_token_ids=None)
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
            generate(model, batches[0], max_length)
    for repetition in range(repetitions):
        log(f"{label}: timing repetition {repetition + 1}/{repetitions}")
        for k in range(len(models)):
            i = (k + repetition) % len(models)
            for batch in batches:
                start = time.perf_counter()
                generate(model=models[i], batch=batch, max_length=max_length)
                times[i].append(time.perf_counter() - start)
    return times
