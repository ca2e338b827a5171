"""`SpeculativeSampler`: exact speculative decoding inside `generate()`."""

import copy
import math
import numbers

import keras
import keras_hub
import numpy as np
from keras import ops, random
from keras_hub.src.utils.tensor_utils import any_equal

from keras_specdec import model_utils, rejection
from keras_specdec.drafts import Draft

# Order of the counters in the `stats` variable.
STAT_NAMES = (
    "target_calls",  # verification forward passes of the target
    "row_target_calls",  # target_calls times batch size
    "proposed_tokens",  # draft tokens proposed (not forced, inside max_length)
    "draft_tokens",  # draft tokens judged: up to and incl. the first rejection
    "accepted_tokens",  # draft tokens accepted
    "emitted_tokens",  # new tokens decided (accepted + recovered + bonus)
)


NEEDS_A_DRAFT = (
    "`SpeculativeSampler` needs a draft: "
    "`target.compile(sampler=keras_specdec.SpeculativeSampler(draft=...))` with "
    "a KerasHub model, a preset name or path, or a `keras_specdec.drafts.Draft`. "
    'A sampler name alone (`compile(sampler="speculative_decoding")`) cannot '
    "carry the draft; the name is for configs: `keras_hub.samplers.get("
    '{"class_name": "speculative_decoding", "config": {"draft": '
    '"<preset name or path>", ...}})`.'
)


class _NameOnly:
    """`SpeculativeSampler.variables` read on the class: what `generate()`
    reads first when `compile(sampler="speculative_decoding")` stored the
    class itself (a name resolves to the class); iterating it explains."""

    def __iter__(self):
        raise ValueError(NEEDS_A_DRAFT)


class _instance_property(property):
    """A property that, read on the class instead of an instance, returns
    `_NameOnly()` (not the property object, which `generate()` would fail to
    iterate with a bare TypeError)."""

    def __get__(self, instance, owner=None):
        if instance is None:
            return _NameOnly()
        return super().__get__(instance, owner)


@keras.saving.register_keras_serializable(package="keras_specdec")
class SpeculativeSampler(keras_hub.samplers.Sampler):
    """Speculative decoding (Leviathan, Kalman & Matias, ICML 2023).

    A small `draft` model proposes `num_speculative_tokens` (gamma) tokens one
    at a time; the target (the model this sampler is compiled into) scores all
    gamma + 1 positions in ONE `call_with_cache` forward pass; each draft token
    x is accepted with probability min(1, p(x) / q(x)); at the first rejection
    the recovered token is drawn from norm(max(0, p - q)); if all gamma are
    accepted a bonus token is drawn from p_{gamma+1}. Here p and q are the
    *adjusted* distributions of `base_sampler` (temperature, top-k, top-p
    applied exactly as KerasHub's samplers apply them), so the output follows
    exactly the distribution that `target.compile(sampler=base_sampler)`
    samples from; with `"greedy"` the output is identical to greedy decoding.

    The whole generation is the one XLA program that `generate()` compiles:
    static shapes, a `while_loop` over rounds, the draft's weights passed to
    the program as arguments (through `variables`).

    Batches: the cache index is one scalar for the whole batch, so rows
    advance together by the fewest tokens any row decided in a round. Tokens
    that a row decided beyond that common index are not thrown away: they are
    kept as *forced* tokens, exactly like the prompt tokens of a longer row in
    a ragged batch, and the next rounds accept them without a test. This keeps
    the distribution exact because each round returns, for every row, a
    prefix that is an exact sample of the target's process continued from the
    row's decided tokens (Theorem 1 of the paper, applied per round); how many
    of those tokens a round keeps depends only on randomness that is not
    reused, and sampling autoregressively from a prefix that is itself an
    exact sample is again exact (the chain rule of the joint distribution).
    Prompt tokens are never overwritten.

    Args:
        draft: the draft model: a KerasHub `CausalLM` (or `Seq2SeqLM` for
            an encoder-decoder target) with the target's vocabulary, a preset
            name or path for `from_preset`, or a model-free
            `keras_specdec.drafts.Draft` (unigram, bigram, prompt lookup, or
            your own).
        num_speculative_tokens: int >= 1, gamma, the draft tokens per round;
            or `"auto"`: each round chooses gamma <= `max_speculative_tokens`
            inside the compiled loop. Shapes stay static: the program holds
            one complete round (k draft steps, a k + 1 token verify pass,
            rejection sampling) per k in `VERIFY_GAMMAS` (<= the maximum, plus
            the maximum) and `lax.switch` runs the smallest one covering the
            round's gamma, so a round costs what a fixed-gamma round of that
            size costs. The "theorem" schedule only picks those sizes; the
            heuristic's gammas in between draft the next size up and judge
            only the first gamma proposals.
        base_sampler: the decoding distribution to preserve: `"greedy"`,
            `"random"`, `"top_k"`, `"top_p"`, a config dict, or an instance
            such as `keras_hub.samplers.TopPSampler(p=0.9, temperature=0.7)`.
        seed: int or None, seed of the sampler's random draws (drafting,
            acceptance tests, recovered and bonus tokens). Defaults to the
            base sampler's seed.
        max_speculative_tokens: int, the largest gamma `"auto"` may choose.
        gamma_schedule: for `"auto"`: `"theorem"` picks the gamma that
            maximises Theorem 3.8 for the running acceptance rate (over this
            sampler's calls so far, prior alpha 0.5) and `cost_coefficient`;
            `"heuristic"` is HF's schedule (start at 5, +2 after a round with
            every draft accepted, else -1).
        cost_coefficient: c = time(draft step) / time(target step) for the
            `"theorem"` schedule, e.g. from
            `keras_specdec.analysis.measure_cost_coefficient(target, draft)`
            (0 is assumed for model-free drafts).
        verify_costs: optional dict `{gamma: v}`, v = time(verify pass of
            gamma + 1 tokens) / time(one target step), e.g. from
            `keras_specdec.analysis.measure_verify_costs(target, gammas)`.
            Theorem 3.8 assumes v = 1 (free parallel scoring, true on TPUs and
            for large models on GPUs); where scoring more tokens costs more
            (CPUs, small models) the `"theorem"` schedule then maximises
            `(1 - alpha^(gamma+1)) / ((1 - alpha)(gamma c + v))` instead,
            over the measured gammas only.

    Counters (since the last `reset_stats()`) come from `stats()`:
    `target_calls`, `draft_tokens` (judged proposals), `accepted_tokens`,
    `emitted_tokens`, `acceptance_rate` = accepted / draft (an estimate of the
    paper's alpha) and `tokens_per_target_call` (per row).

    Example:

    ```python
    import keras_hub, keras_specdec
    import numpy as np

    def gpt2(layers, hidden):
        backbone = keras_hub.models.GPT2Backbone(
            vocabulary_size=64, num_layers=layers, num_heads=2,
            hidden_dim=hidden, intermediate_dim=2 * hidden,
            max_sequence_length=32)
        return keras_hub.models.GPT2CausalLM(backbone=backbone,
                                             preprocessor=None)

    target, draft = gpt2(4, 64), gpt2(1, 16)
    target.compile(sampler=keras_specdec.SpeculativeSampler(
        draft=draft, num_speculative_tokens=4, base_sampler="greedy"))
    prompt = {"token_ids": np.array([[1, 2, 3] + [0] * 13]),
              "padding_mask": np.array([[True] * 3 + [False] * 13])}
    output = target.generate(prompt, stop_token_ids=None)
    print(target.sampler.stats())
    ```
    """

    def __init__(
        self,
        draft=None,
        num_speculative_tokens=4,
        base_sampler="greedy",
        seed=None,
        max_speculative_tokens=8,
        gamma_schedule="theorem",
        cost_coefficient=None,
        verify_costs=None,
        **kwargs,
    ):
        if draft is None:
            raise ValueError(NEEDS_A_DRAFT)
        if "temperature" in kwargs:
            raise ValueError(
                "`SpeculativeSampler` takes no `temperature`: set it on the "
                "base sampler, e.g. `base_sampler=keras_hub.samplers."
                "RandomSampler(temperature=0.7)`."
            )
        super().__init__(**kwargs)
        if keras.config.backend() != "jax":
            raise ValueError(
                "`keras_specdec.SpeculativeSampler` runs on the JAX backend, "
                f"but the Keras backend is `{keras.config.backend()}`. Set "
                "`KERAS_BACKEND=jax` before importing keras."
            )

        num_speculative_tokens = _check_gamma(
            num_speculative_tokens, "num_speculative_tokens", allow_auto=True
        )
        max_speculative_tokens = _check_gamma(
            max_speculative_tokens, "max_speculative_tokens"
        )
        if gamma_schedule not in ("theorem", "heuristic"):
            raise ValueError(
                '`gamma_schedule` must be "theorem" (maximise Theorem 3.8 for '
                'the running alpha) or "heuristic" (HF\'s +2 / -1 schedule), '
                f"got {gamma_schedule!r}."
            )
        if cost_coefficient is not None:
            if (
                not isinstance(cost_coefficient, numbers.Real)
                or isinstance(cost_coefficient, bool)
                or not math.isfinite(cost_coefficient)
                or cost_coefficient < 0
            ):
                raise ValueError(
                    "`cost_coefficient` must be a number c >= 0, c = time(draft "
                    "step) / time(target step), e.g. from "
                    "`keras_specdec.analysis.measure_cost_coefficient(target, "
                    f"draft)`; got {cost_coefficient!r}."
                )
            cost_coefficient = float(cost_coefficient)
        self.num_speculative_tokens = num_speculative_tokens
        self.max_speculative_tokens = max_speculative_tokens
        self.gamma_schedule = gamma_schedule
        self.cost_coefficient = cost_coefficient
        if verify_costs is not None:
            try:
                verify_costs = {int(g): float(v) for g, v in dict(verify_costs).items()}
            except (TypeError, ValueError):
                verify_costs = None
            if not verify_costs or min(verify_costs.values()) <= 0:
                raise ValueError(
                    "`verify_costs` must map gamma (int) to v > 0, the time of a "
                    "gamma + 1 token verify pass over one target step, e.g. "
                    "`keras_specdec.analysis.measure_verify_costs(target, "
                    "range(1, 9))`."
                )
        self.verify_costs = verify_costs
        self.base_sampler = _get_base_sampler(base_sampler)
        if seed is None:
            seed = getattr(self.base_sampler, "seed", None)
        self.seed = seed
        self.seed_generator = random.SeedGenerator(seed)

        # A preset name or path round-trips by name; a model-free draft by
        # its config (which holds its arrays). A model's config holds no
        # weights: it is refused rather than rebuilt with random weights.
        self._draft_preset = draft if isinstance(draft, str) else None
        if isinstance(draft, str):
            draft = model_utils.load_causal_lm(draft)
        elif isinstance(draft, dict):
            draft = _deserialize_draft(draft)
        if not isinstance(draft, (keras_hub.models.CausalLM, Draft)):
            raise ValueError(
                "`draft` must be a KerasHub `CausalLM` or `Seq2SeqLM` (or a "
                "preset name or path for one), or a `keras_specdec.drafts.Draft`"
                f", got {type(draft).__name__}."
            )
        model_utils.check_rollback(draft, "draft")
        if (
            num_speculative_tokens == "auto"
            and gamma_schedule == "theorem"
            and cost_coefficient is None
        ):
            if not isinstance(draft, Draft):
                raise ValueError(
                    '`num_speculative_tokens="auto"` with the "theorem" '
                    "schedule needs the draft's cost coefficient c = time(draft "
                    "step) / time(target step). Measure it once with "
                    "`keras_specdec.analysis.measure_cost_coefficient(target, "
                    "draft)` and pass `cost_coefficient=c`, or use "
                    '`gamma_schedule="heuristic"`.'
                )
            self.cost_coefficient = 0.0  # a model-free draft costs ~nothing
        if model_utils.is_seq2seq(draft):
            model_utils.publish_generate_inputs(type(draft))
        self.draft = draft
        self._stats = keras.Variable(
            ops.zeros((len(STAT_NAMES),), dtype="int32"),
            trainable=False,
            dtype="int32",
            name="speculative_stats",
        )
        self.trace_count = 0  # how often `generate()` traced this sampler

    @_instance_property
    def variables(self):
        # Seed state, counters, and the draft's weights: `generate()` passes
        # these to its jitted function as arguments, so the draft is not
        # baked into the XLA program as constants.
        draft_variables = (
            self.draft.variables
            if model_utils.is_model_free(self.draft)
            else self.draft.weights
        )
        return [*super().variables, self._stats, *draft_variables]

    def stats(self):
        """Counters since the last `reset_stats()`, as a dict of numbers."""
        values = [int(v) for v in ops.convert_to_numpy(self._stats)]
        stats = dict(zip(STAT_NAMES, values))
        stats["acceptance_rate"] = (
            stats["accepted_tokens"] / stats["draft_tokens"]
            if stats["draft_tokens"]
            else float("nan")
        )
        stats["tokens_per_target_call"] = (
            stats["emitted_tokens"] / stats["row_target_calls"]
            if stats["row_target_calls"]
            else float("nan")
        )
        return stats

    def reset_stats(self):
        self._stats.assign(ops.zeros((len(STAT_NAMES),), dtype="int32"))

    def _check_target(self, model, prompt=None):
        """Everything about the target/draft pair that can fail, checked when
        `generate()` traces the sampler, before XLA compiles anything.

        Args:
            model: the target (`generate()`'s model).
            prompt: `generate()`'s token buffer; its static length is
                `max_length`.
        """
        if model is None:
            raise ValueError(
                "`SpeculativeSampler` needs the target model: compile it into "
                "a KerasHub task with `target.compile(sampler=...)` and call "
                "`target.generate()`."
            )
        model_utils.check_rollback(model, "target")
        if not model_utils.is_model_free(self.draft) and (
            model_utils.is_seq2seq(model) != model_utils.is_seq2seq(self.draft)
        ):
            kind = {True: "an encoder-decoder `Seq2SeqLM`", False: "a `CausalLM`"}
            raise ValueError(
                f"The target is {kind[model_utils.is_seq2seq(model)]} "
                f"(`{type(model).__name__}`) but the draft is "
                f"{kind[model_utils.is_seq2seq(self.draft)]} "
                f"(`{type(self.draft).__name__}`). Use a draft of the same kind "
                "and vocabulary, e.g. a smaller preset of the target's family."
            )
        target_vocab = model_utils.vocabulary_size(model)
        draft_vocab = model_utils.vocabulary_size(self.draft)
        if target_vocab != draft_vocab:
            mismatch = (
                "the draft is model-free"
                if model_utils.is_model_free(self.draft)
                else model_utils.tokenizer_mismatch(model, self.draft)
            )
            if mismatch is not None:
                raise ValueError(
                    "The draft and target must share one vocabulary, but the "
                    f"target's vocabulary_size is {target_vocab} and the "
                    f"draft's is {draft_vocab}, and {mismatch}. Use a draft "
                    "trained with the target's tokenizer (e.g. a smaller preset "
                    "of the same family); embedding tables that differ only by "
                    "padding are fine when both models carry that tokenizer. "
                    "A model-free draft takes `vocabulary_size="
                    f"{target_vocab}`."
                )
            # Same tokenizer, tables padded differently: the loop maps the
            # draft's logits onto the target's ids (`match_vocabulary`).
        if prompt is not None:
            # The target's own table is KerasHub's business: its prefill
            # (`_build_cache`, before the sampler runs) fails the same way
            # with any sampler.
            max_length = int(prompt.shape[1])
            length = model_utils.context_length(self.draft)
            if length is not None and length < max_length:
                raise ValueError(
                    f"The draft (`{type(self.draft).__name__}`) has learned "
                    f"position embeddings for {length} positions "
                    "(`backbone.max_sequence_length`), shorter than "
                    f"`generate()`'s max_length {max_length}. Pass "
                    f"`max_length={length}` or less to `generate()` (or a "
                    "shorter `sequence_length` to the preprocessor), or use a "
                    "draft with a longer context."
                )

    def __call__(
        self,
        next,
        prompt,
        cache=None,
        index=0,
        mask=None,
        stop_token_ids=None,
        hidden_states=None,
        model=None,
        **kwargs,
    ):
        self._check_target(model, prompt)
        self.trace_count += 1
        batch_size, max_length = ops.shape(prompt)
        # Static gamma for this max_length: the verify window must fit.
        adaptive = self.num_speculative_tokens == "auto"
        gamma = self.max_speculative_tokens if adaptive else self.num_speculative_tokens
        gamma = min(gamma, max_length - 1)
        if gamma < 1:
            return prompt
        greedy = rejection.is_greedy(self.base_sampler)
        token_dtype = prompt.dtype
        index = ops.cast(index, "int32")
        if mask is None:
            mask = ops.zeros_like(prompt, dtype="bool")
        prompt_mask = ops.cast(mask, "bool")  # (batch, max_length)

        # Work on buffers gamma positions longer than max_length, so a window
        # of gamma + 1 tokens at any index < max_length is never clamped.
        # Model caches keep max_length: every model call below clamps its own
        # start so it never writes past the cache.
        tail = ops.zeros((batch_size, gamma), dtype=token_dtype)
        tokens = ops.concatenate([prompt, tail], axis=1)
        no_tail = ops.zeros((batch_size, gamma), dtype="bool")
        prompt_mask_buffer = ops.concatenate([prompt_mask, no_tail], axis=1)
        forced = prompt_mask_buffer  # (batch, max_length + gamma)
        positions = ops.arange(max_length + gamma, dtype="int32")[None, :]
        draft_cache = model_utils.init_state(self.draft, prompt, prompt_mask)
        cache = model_utils.target_state(model, cache)
        stats = ops.zeros((len(STAT_NAMES),), dtype="int32")

        def window(x, start, size):
            return ops.slice(x, [0, start], [batch_size, size])

        def decode_window(decoder, state, tokens, start, size):
            """Feed `tokens[:, start:start + size]` to `decoder` (its cache
            written at `start`): `(logits (batch, size, vocab), state)`."""
            return model_utils.decode(
                decoder,
                state,
                window(tokens, start, size),
                start,
                window(prompt_mask_buffer, start, size),
            )

        verify_gammas = self._verify_gammas(gamma) if adaptive else [gamma]
        heuristic = adaptive and self.gamma_schedule == "heuristic"
        # Random draws per round: one per draft proposal, the acceptance
        # uniforms, the recovered/bonus token.
        num_draws = 0 if greedy else gamma + 2

        def adjusted(logits):
            return rejection.adjusted_probabilities(logits, self.base_sampler)

        def choose_num_proposed(stats, round_gamma):
            """This round's gamma when adaptive (a scalar <= gamma)."""
            if heuristic:
                return round_gamma
            # Running alpha over earlier calls and this one, with a
            # uniform prior; gamma maximising Theorem 3.8 for it.
            totals = ops.cast(ops.convert_to_tensor(self._stats) + stats, "float32")
            alpha = (totals[STAT_NAMES.index("accepted_tokens")] + 1.0) / (
                totals[STAT_NAMES.index("draft_tokens")] + 2.0
            )
            alpha = ops.minimum(alpha, 1.0 - 1e-6)
            # Only gammas with a round of their own, and, when verify costs
            # are given, only measured ones.
            candidates = self._theorem_candidates(verify_gammas)
            g = ops.convert_to_tensor(candidates, "float32")
            v = ops.convert_to_tensor(
                [self._verify_cost(k) for k in candidates], "float32"
            )
            speedup = (1.0 - alpha ** (g + 1.0)) / (
                (1.0 - alpha) * (g * float(self.cost_coefficient) + v)
            )
            return ops.take(
                ops.convert_to_tensor(candidates, "int32"), ops.argmax(speedup)
            )

        def make_round(k, dynamic_num_proposed):
            """One round with k draft proposals and a verify pass of k + 1
            tokens, all shapes static. With `dynamic_num_proposed` only the
            first `num_proposed` (<= k) proposals are judged (the heuristic
            schedule between two round sizes); otherwise all k are.

            `seeds` is None (draw from the sampler's seed generator) or
            `(num_draws, 2)` seeds drawn before a `switch` over rounds:
            branches of a `lax.switch` must not update the generator's state.
            """

            def seed_at(seeds, i):
                return self.seed_generator if seeds is None else seeds[i]

            def round_fn(
                tokens, forced, target_cache, draft_cache, index, stats,
                num_proposed, seeds,
            ):  # fmt: skip
                if not dynamic_num_proposed:
                    num_proposed = None
                # ---- Draft: k proposals, one token per draft call. ----
                # The first call re-feeds index - 2 too: after a round in
                # which all proposals were accepted, the last one was never
                # fed to the draft, and its cache slot would be a hole.
                start = ops.maximum(index - 2, 0)
                draft_logits, draft_cache = decode_window(
                    self.draft, draft_cache, tokens, start, 2
                )
                draft_logits = ops.take(draft_logits, index - 1 - start, axis=1)
                draft_token_ids, draft_probs = [], []
                for j in range(k):
                    if j > 0:
                        # Past max_length the position is invalid; clamp so
                        # the cache write stays inside the cache.
                        feed = ops.minimum(index + j - 1, max_length - 1)
                        draft_logits, draft_cache = decode_window(
                            self.draft, draft_cache, tokens, feed, 1
                        )
                        draft_logits = draft_logits[:, 0]
                    # Vocabularies differing by padding: q over the target's ids.
                    draft_logits = model_utils.match_vocabulary(
                        draft_logits, model_utils.vocabulary_size(model)
                    )  # (batch, target vocab)
                    if greedy:
                        proposal = ops.argmax(draft_logits, axis=-1)
                    else:
                        q = adjusted(draft_logits)  # (batch, vocab)
                        proposal = rejection.sample_categorical(q, seed_at(seeds, j))
                        draft_probs.append(q)
                    proposal = ops.cast(proposal, token_dtype)[:, None]
                    is_forced = window(forced, index + j, 1)
                    proposal = ops.where(
                        is_forced, window(tokens, index + j, 1), proposal
                    )
                    tokens = ops.slice_update(tokens, [0, index + j], proposal)
                    draft_token_ids.append(proposal)
                draft_token_ids = ops.concatenate(draft_token_ids, axis=1)

                # ---- Target: score k + 1 positions in one forward pass. ----
                # Positions index .. index + k are predicted by the tokens at
                # index - 1 .. index + k - 1. Near max_length the chunk
                # starts earlier (re-feeding decided tokens) instead of being
                # clamped by XLA onto earlier cache slots; the logits are
                # realigned.
                verify_start = ops.minimum(index - 1, max_length - k - 1)
                target_logits, target_cache = decode_window(
                    model, target_cache, tokens, verify_start, k + 1
                )  # (batch, k + 1, vocab)
                shift = index - 1 - verify_start
                rows = ops.minimum(ops.arange(k + 1, dtype="int32") + shift, k)
                target_logits = ops.take(target_logits, rows, axis=1)

                window_forced = window(forced, index, k + 1)
                window_tokens = window(tokens, index, k + 1)
                if greedy:
                    output, num_accepted = rejection.greedy_verify(
                        draft_token_ids,
                        target_logits,
                        window_forced,
                        window_tokens,
                        num_proposed=num_proposed,
                    )
                else:
                    output, num_accepted = rejection.rejection_sample(
                        draft_token_ids,
                        ops.stack(draft_probs, axis=1),  # (batch, k, vocab)
                        adjusted(target_logits),  # (batch, k + 1, vocab)
                        window_forced,
                        window_tokens,
                        seed_at(seeds, k),
                        num_proposed=num_proposed,
                        recovery_seed=seed_at(seeds, k + 1),
                    )

                # ---- Bookkeeping. ----
                offsets = ops.arange(k + 1, dtype="int32")[None, :]
                num_valid = max_length - index  # positions left
                decided_now = ops.logical_and(
                    offsets <= num_accepted[:, None], offsets < num_valid
                )
                output = ops.where(
                    decided_now, ops.cast(output, token_dtype), window_tokens
                )
                tokens = ops.slice_update(tokens, [0, index], output)
                decided_end = ops.minimum(index + num_accepted + 1, max_length)
                forced = ops.logical_or(
                    forced,
                    ops.logical_and(
                        positions >= index, positions < decided_end[:, None]
                    ),
                )
                new = ops.logical_not(window_forced)
                proposal_ok = ops.logical_and(new, offsets < num_valid)[:, :k]
                if num_proposed is not None:
                    proposal_ok = ops.logical_and(
                        proposal_ok, offsets[:, :k] < num_proposed
                    )
                judged = ops.logical_and(
                    proposal_ok, offsets[:, :k] <= num_accepted[:, None]
                )
                accepted = ops.logical_and(
                    proposal_ok, offsets[:, :k] < num_accepted[:, None]
                )
                emitted = ops.logical_and(new, decided_now)

                def count(x):
                    return ops.sum(ops.cast(x, "int32"))

                stats = stats + ops.stack(
                    [
                        ops.convert_to_tensor(1, "int32"),
                        ops.cast(batch_size, "int32"),
                        count(proposal_ok),
                        count(judged),
                        count(accepted),
                        count(emitted),
                    ]
                )
                # Every proposal accepted in every row (the heuristic's +2).
                all_accepted = ops.min(num_accepted) >= (
                    k if num_proposed is None else num_proposed
                )
                index = ops.min(decided_end)
                return (
                    tokens, forced, target_cache, draft_cache, index, stats,
                    all_accepted,
                )  # fmt: skip

            return round_fn

        def cond(tokens, forced, target_cache, draft_cache, index, stats, round_gamma):
            not_done = index < max_length
            if stop_token_ids is None:
                return not_done
            decided = ops.logical_or(positions < index, forced)
            generated = ops.logical_and(decided, ops.logical_not(prompt_mask_buffer))
            row_done = ops.any(any_equal(tokens, stop_token_ids, generated), axis=-1)
            return ops.logical_and(not_done, ops.logical_not(ops.all(row_done)))

        def body(tokens, forced, target_cache, draft_cache, index, stats, round_gamma):
            state = (tokens, forced, target_cache, draft_cache, index, stats)
            if not adaptive:
                *state, _ = make_round(gamma, False)(*state, None, None)
                return (*state, round_gamma)
            # Adaptive: the program holds one complete round per size in
            # `verify_gammas` (static shapes each) and `switch` runs the
            # smallest one covering this round's gamma, so a round of size k
            # costs what a fixed-gamma-k round costs. Seeds are drawn here,
            # outside the switch.
            num_proposed = choose_num_proposed(stats, round_gamma)
            bucket = ops.sum(
                ops.cast(
                    ops.convert_to_tensor(verify_gammas, "int32") < num_proposed,
                    "int32",
                )
            )
            seeds = None
            if num_draws:
                seeds = ops.stack(
                    [self.seed_generator.next() for _ in range(num_draws)]
                )  # (num_draws, 2)
            *state, all_accepted = ops.switch(
                bucket,
                [make_round(k, heuristic) for k in verify_gammas],
                *state,
                num_proposed,
                seeds,
            )
            if heuristic:
                # HF's schedule: +2 after a round with every draft accepted
                # (in every row), -1 otherwise.
                round_gamma = ops.clip(
                    ops.where(all_accepted, round_gamma + 2, round_gamma - 1),
                    1,
                    gamma,
                )
            return (*state, round_gamma)

        round_gamma = ops.convert_to_tensor(min(5, gamma), "int32")
        tokens, forced, _, _, index, stats, _ = self.run_loop(
            cond,
            body,
            loop_vars=(tokens, forced, cache, draft_cache, index, stats, round_gamma),
            maximum_iterations=max_length - index,
            model=model,
        )
        self._stats.assign(self._stats + stats)
        decided = ops.logical_or(positions < index, forced)[:, :max_length]
        if stop_token_ids is not None:
            # Like KerasHub's own loop, stop right after the position at which
            # the last row produced its first stop token: a round may have
            # decided tokens past it, which are dropped.
            generated = ops.logical_and(decided, ops.logical_not(prompt_mask))
            is_stop = any_equal(tokens[:, :max_length], stop_token_ids, generated)
            first_stop = ops.where(
                ops.any(is_stop, axis=-1),
                ops.argmax(ops.cast(is_stop, "int32"), axis=-1),
                max_length,
            )
            end = ops.minimum(ops.max(first_stop) + 1, max_length)
            decided = ops.logical_and(decided, positions[:, :max_length] < end)
        return ops.where(decided, tokens[:, :max_length], prompt)

    # The gammas "auto" can verify with a pass of their own size: few enough
    # to keep compile time small, dense where gamma is usually chosen.
    VERIFY_GAMMAS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32)

    def _verify_gammas(self, gamma):
        return sorted({k for k in self.VERIFY_GAMMAS if k < gamma} | {gamma})

    def _theorem_candidates(self, verify_gammas):
        """Gammas the "theorem" schedule may pick: those with a verify pass,
        restricted to measured ones when `verify_costs` is given (guessing v
        for unmeasured gammas from a neighbour biased the choice)."""
        if not self.verify_costs:
            return list(verify_gammas)
        measured = [k for k in verify_gammas if k in self.verify_costs]
        return measured or list(verify_gammas)

    def _verify_cost(self, gamma):
        """v(gamma) from `verify_costs` (nearest measured gamma), else 1."""
        if not self.verify_costs:
            return 1.0
        nearest = min(self.verify_costs, key=lambda g: (abs(g - gamma), g))
        return self.verify_costs[nearest]

    def get_config(self):
        draft = self._draft_preset or keras.saving.serialize_keras_object(self.draft)
        return {
            "draft": draft,
            "num_speculative_tokens": self.num_speculative_tokens,
            "max_speculative_tokens": self.max_speculative_tokens,
            "gamma_schedule": self.gamma_schedule,
            "cost_coefficient": self.cost_coefficient,
            "verify_costs": (
                None
                if self.verify_costs is None
                else {str(g): v for g, v in self.verify_costs.items()}
            ),
            "base_sampler": keras_hub.samplers.serialize(self.base_sampler),
            "seed": self.seed,
        }


# A short, lowercase name that `keras_hub.samplers.get` accepts (KerasHub's
# own "speculative" is its Gemma4-only sampler). As a config's `class_name`
# it builds this sampler; a bare string resolves to the class, which cannot
# carry the draft (`generate()` then says so, see `_NameOnly`).
REGISTERED_ALIAS = "speculative_decoding"
keras.saving.get_custom_objects()[REGISTERED_ALIAS] = SpeculativeSampler


def _check_gamma(value, name, allow_auto=False):
    """An int >= 1 (Python or numpy integer, not bool), or "auto"."""
    if allow_auto and isinstance(value, str) and value == "auto":
        return value
    if (
        isinstance(value, numbers.Integral)
        and not isinstance(value, (bool, np.bool_))
        and value >= 1
    ):
        return int(value)
    auto = ' or "auto"' if allow_auto else ""
    raise ValueError(f"`{name}` must be an int >= 1{auto}, got {value!r}.")


def _deserialize_draft(config):
    """A draft from its Keras config: model-free drafts only.

    A model's config describes its layers but holds no weights, so rebuilding
    it would give a randomly initialised draft (alpha ~ 0) without a word.
    """
    name = config.get("registered_name") or config.get("class_name")
    cls = keras.saving.get_registered_object(name)
    if isinstance(cls, type) and issubclass(cls, Draft):
        return keras.saving.deserialize_keras_object(copy.deepcopy(config))
    raise ValueError(
        f"The sampler config's `draft` is the config of a `{name}` model, "
        "which holds no weights: rebuilding it would give a draft with random "
        "weights. Pass the draft model itself, e.g. "
        "`SpeculativeSampler.from_config({**config, 'draft': draft_model})`, or "
        "save it once with `draft_model.save_to_preset(path)` and build the "
        "sampler with `draft=path` (a preset name or path round-trips by name)."
    )


def _get_base_sampler(base_sampler):
    if isinstance(base_sampler, (str, dict)):
        base_sampler = keras_hub.samplers.get(base_sampler)
    for cls in rejection.SUPPORTED_BASE_SAMPLERS:
        if isinstance(base_sampler, cls):
            overridden = (
                type(base_sampler).get_next_token is not cls.get_next_token
                or type(base_sampler).compute_probabilities
                is not cls.compute_probabilities
            )
            if not overridden:
                return base_sampler
    raise ValueError(
        "`base_sampler` must be one of 'greedy', 'random', 'top_k', 'top_p' "
        "(or an instance of GreedySampler, RandomSampler, TopKSampler, "
        "TopPSampler), whose next-token distribution speculative decoding "
        f"can preserve exactly; got {base_sampler!r}. Beam and contrastive "
        "search pick tokens from several candidates and cannot be verified "
        "token by token."
    )
