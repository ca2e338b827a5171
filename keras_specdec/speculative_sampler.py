"""`SpeculativeSampler`: exact speculative decoding inside `generate()`."""

import threading

import keras
import keras_hub
from keras import ops, random
from keras.src.backend.common.stateless_scope import in_stateless_scope

from keras_specdec import (
    loop,
    model_utils,
    models,
    rejection,
    rounds,
    sampler_config,
    schedules,
    sharding,
)

# `verification=`: how a round's proposals are judged (`rounds.accept`).
VERIFICATIONS = ("token", "block")

# Order of the counters in the `stats` variable (`rounds.SpeculativeStats`).
STAT_NAMES = rounds.SpeculativeStats._fields


class _Counters(keras.Variable):
    """The sampler's counters (`SpeculativeStats` as an int32 vector): a
    variable to which a value assigned outside a `keras.StatelessScope` is
    *added*, under a lock.

    `generate()` reads the sampler's variables, runs its compiled program
    (which assigns, in a stateless scope, the counts of that call alone) and
    writes the results back with `assign`: adding them here means that
    threads sharing one compiled model each add their own counts instead of
    overwriting each other's total with a stale one. (An eager `generate()`
    assigns the call's counts directly: the same addition.) `reset()` sets
    the value.
    """

    _lock = threading.Lock()

    def assign(self, value):
        if in_stateless_scope():
            return super().assign(value)
        with self._lock:
            return super().assign(ops.add(self.value, ops.cast(value, self.dtype)))

    def reset(self):
        with self._lock:
            super().assign(ops.zeros(self.shape, self.dtype))


# Per thread, the samplers inside `run_loop` (their `variables` leave out the
# counters there). Module-level, so a sampler holds no thread-local state and
# stays copyable.
_IN_LOOP = threading.local()


class _NameOnly:
    """`SpeculativeSampler.variables` read on the class: what `generate()`
    reads first when `compile(sampler="speculative_decoding")` stored the
    class itself (a name resolves to the class); iterating it explains."""

    def __iter__(self):
        raise ValueError(sampler_config.NEEDS_A_DRAFT)


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

    Batches: every row advances at its own pace. Each row has its own
    cache position (`ModelAdapter.decode_rows`: the model's cached call
    `jax.vmap`-ed over rows, each with its own index), so a round moves each
    row by its own accepted count + 1 and a row's tokens never depend on its
    neighbours' acceptances or random draws. Ragged prompts start at their
    own ends; prompt tokens are never overwritten. Rows that are full (or,
    with stop tokens, past the end of the output) judge no proposals and do
    not move; the loop ends when every row is. With stop tokens the output is
    exactly KerasHub's: rows keep generating until the last row has produced
    its first stop token, as KerasHub's loop does (a stop id equal to the
    padding id included: KerasHub's loop sees it in the padding and stops
    at once, and so does this one). The round's phases are
    module-level functions in `keras_specdec.rounds`.

    Args:
        draft: the draft model: a KerasHub `CausalLM` (or `Seq2SeqLM` for
            an encoder-decoder target) with the target's vocabulary, a preset
            name or path for `from_preset`, or a model-free
            `keras_specdec.drafts.Draft` (unigram, bigram, prompt lookup, or
            your own).
        num_speculative_tokens: int >= 1, gamma, the draft tokens per round;
            or `"auto"`: each round chooses gamma <= `max_speculative_tokens`
            inside the compiled loop. Shapes stay static: the draft's steps
            run in a `fori_loop` to the round's gamma (buffers of the
            maximum), and the program holds one verify pass + rejection
            sampling per k in `VERIFY_GAMMAS` (<= the maximum, plus the
            maximum); `lax.switch` runs the smallest one covering the
            round's gamma. The "theorem" schedule only picks those sizes;
            the heuristic's gammas in between verify at the next size up and
            judge only their gamma proposals.
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
        verification: `"token"` (Leviathan et al.: each proposal accepted
            with min(1, p / q) on its own, stopping at the first rejection)
            or `"block"` (block verification, Sun et al., 2024, "Block
            Verification Accelerates Speculative Decoding", Algorithm 2: the
            block is judged jointly, keeping the same exact distribution with
            the same model calls and never fewer accepted tokens in
            expectation; equal for point-mass drafts such as prompt lookup).
            Greedy decoding is the same either way. Default `"block"`: on
            the code pair (T=1, gamma 4) it gave 4-6% more tokens per target
            call at batch 1 and 16 and 3-5% less walltime
            (docs/guides/block-verification.md).

    Counters (since the last `reset_stats()`) come from `stats()`:
    `target_calls`, `draft_tokens` (judged proposals), `accepted_tokens`,
    `emitted_tokens`, `acceptance_rate` = accepted / draft (an estimate of the
    paper's alpha) and `tokens_per_target_call` (per row). Threads that call
    `generate()` on one compiled model each add their own counts.

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
        verification="block",
        **kwargs,
    ):
        config = sampler_config.resolve(
            draft,
            num_speculative_tokens,
            base_sampler,
            max_speculative_tokens,
            gamma_schedule,
            cost_coefficient,
            verify_costs,
            sampler_kwargs=kwargs,
        )
        super().__init__(**kwargs)
        draft = config.draft
        self._draft_preset = config.draft_preset
        self.num_speculative_tokens = config.num_speculative_tokens
        self.max_speculative_tokens = config.max_speculative_tokens
        self.gamma_schedule = config.gamma_schedule
        self.cost_coefficient = config.cost_coefficient
        self.verify_costs = config.verify_costs
        self.base_sampler = config.base_sampler
        if verification not in VERIFICATIONS:
            raise ValueError(
                '`verification` must be "token" (each draft token tested on its '
                'own, Leviathan et al.) or "block" (the draft block judged '
                "jointly, Sun et al. 2024: same distribution, never fewer "
                f"accepted tokens in expectation), got {verification!r}."
            )
        self.verification = verification
        if seed is None:
            seed = getattr(self.base_sampler, "seed", None)
        self.seed = seed
        self.seed_generator = random.SeedGenerator(seed)
        if models.adapt(draft).is_seq2seq:
            model_utils.publish_generate_inputs(type(draft))
        self.draft = draft
        self._stats = _Counters(
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
        draft_variables = self.draft_adapter.variables
        # The counters are not the loop's: `run_loop` (which writes back
        # every variable it sees) runs without them (`_Counters`).
        in_loop = id(self) in getattr(_IN_LOOP, "samplers", ())
        counters = [] if in_loop else [self._stats]
        return [*super().variables, *counters, *draft_variables]

    def run_loop(self, *args, **kwargs):
        if not hasattr(_IN_LOOP, "samplers"):
            _IN_LOOP.samplers = set()
        _IN_LOOP.samplers.add(id(self))
        try:
            return super().run_loop(*args, **kwargs)
        finally:
            _IN_LOOP.samplers.discard(id(self))

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
        self._stats.reset()

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
        target, draft = models.adapt(model), self.draft_adapter.for_target(model)
        model_free = isinstance(draft, models.ModelFreeAdapter)
        kind = {True: "an encoder-decoder `Seq2SeqLM`", False: "a `CausalLM`"}
        if draft.reads_target and target.is_seq2seq:
            raise ValueError(
                f"The draft (`{draft.name}`) reads the target's hidden states, "
                "which keras_specdec supports for causal LM targets only; the "
                f"target is {kind[True]} (`{target.name}`). Use a draft model "
                "of the target's family or a model-free draft."
            )
        if not (model_free or draft.reads_target) and (
            target.is_seq2seq != draft.is_seq2seq
        ):
            raise ValueError(
                f"The target is {kind[target.is_seq2seq]} "
                f"(`{target.name}`) but the draft is "
                f"{kind[draft.is_seq2seq]} "
                f"(`{draft.name}`). Use a draft of the same kind "
                "and vocabulary, e.g. a smaller preset of the target's family."
            )
        target_vocab = target.vocabulary_size
        draft_vocab = draft.vocabulary_size
        if target_vocab != draft_vocab:
            mismatch = (
                "the draft is model-free"
                if model_free
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
            length = draft.context_length
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
        if not models.adapt(model).is_seq2seq:
            # A causal target's call publishes no encoder inputs: none may
            # leak in from an earlier call (prompt lookup reads them).
            with model_utils.no_generate_inputs():
                return self._generate(
                    next, prompt, cache, index, mask, stop_token_ids,
                    hidden_states, model,
                )  # fmt: skip
        return self._generate(
            next, prompt, cache, index, mask, stop_token_ids, hidden_states, model
        )

    def _generate(
        self, next, prompt, cache, index, mask, stop_token_ids, hidden_states, model
    ):
        """`__call__` once the target is checked: start -> loop -> output."""
        max_length = ops.shape(prompt)[1]
        # Static gamma for this max_length: the verify window must fit.
        gamma = min(self.max_speculative_tokens if self.adaptive
                    else self.num_speculative_tokens, max_length - 1)  # fmt: skip
        if gamma < 1:
            self._stats.assign(rounds.SpeculativeStats.zeros().to_vector())
            return prompt
        greedy = rejection.is_greedy(self.base_sampler)
        if mask is None:
            mask = ops.zeros_like(prompt, dtype="bool")
        prompt_mask = ops.cast(mask, "bool")  # (batch, max_length)
        target, draft = models.adapt(model), self.draft_adapter.for_target(model)
        target_state = target.target_state(cache)
        setup = rounds.RoundSetup(
            target=target,
            draft=draft,
            base_sampler=self.base_sampler,
            max_length=max_length,
            forced=ops.pad(prompt_mask, [[0, 0], [0, gamma]]),
            target_axes=target.batch_axes(target_state, prompt, prompt_mask),
            draft_axes=None,  # from `loop.start`
            stop_token_ids=stop_token_ids,
            # Rounds of several sizes draft in a loop to the round's size.
            loop_draft_steps=self.adaptive or draft.caps_proposals,
            verify_gammas=tuple(self._verify_gammas(gamma, draft.caps_proposals)),
            prompt=prompt,
            verification=self.verification,
            batch_layouts=sharding.batch_layouts(model, self.draft),
        )
        setup = sharding.constrain_setup(setup)
        schedule = self._schedule(gamma)
        seed = None if greedy else self.seed_generator.next()
        state, draft_axes = loop.start(
            setup, next, prompt, cache, index, hidden_states, target_state, gamma,
            seed, schedule,
        )  # fmt: skip
        setup = setup._replace(draft_axes=draft_axes)
        state = sharding.constrain_round_state(setup, state)
        # Random draws per round: one per proposal, the acceptance uniforms,
        # the recovered / bonus token; drawn before the `switch` over round
        # sizes (its branches must not advance the seed generator).
        num_draws = 0 if greedy else gamma + 2

        def cond(state):
            return ops.any(rounds.active_rows(setup, state))

        def body(state):
            seeds = None
            if num_draws:
                seeds = ops.stack(
                    [self.seed_generator.next() for _ in range(num_draws)]
                )  # (num_draws, 2)
            return (loop.run_round(setup, state, schedule, seeds),)

        (state,) = self.run_loop(
            cond, body, loop_vars=(state,), maximum_iterations=max_length, model=model
        )
        self._stats.assign(state.stats.to_vector())  # this call's counts
        return rounds.output_tokens(setup, state, prompt)

    @property
    def adaptive(self):
        """Whether each round chooses its gamma (`"auto"`)."""
        return self.num_speculative_tokens == "auto"

    @property
    def draft_adapter(self):
        """The draft behind the one model interface (`keras_specdec.models`)."""
        return models.adapt(self.draft)

    def _schedule(self, gamma):
        """The gamma schedule of this sampler (`rounds.*Schedule`)."""
        if self.num_speculative_tokens != "auto":
            return schedules.FixedSchedule(gamma)
        if self.gamma_schedule == "heuristic":
            return schedules.HeuristicSchedule(gamma)
        candidates = self._theorem_candidates(self._verify_gammas(gamma))
        return schedules.TheoremSchedule(
            candidates,
            self.cost_coefficient,
            [self._verify_cost(k) for k in candidates],
            prior=rounds.SpeculativeStats.from_vector(
                ops.convert_to_tensor(self._stats)
            ),
        )

    # The gammas "auto" can verify with a pass of their own size: few enough
    # to keep compile time small, dense where gamma is usually chosen.
    VERIFY_GAMMAS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32)

    def _verify_gammas(self, gamma, capped=False):
        """The sizes a round verifies at: gamma alone for a fixed gamma; for
        "auto", the `VERIFY_GAMMAS` below it too; a draft that caps its
        proposals adds 0 (a plain target step when no row has any)."""
        if not (self.adaptive or capped):
            return [gamma]
        sizes = sorted({k for k in self.VERIFY_GAMMAS if k < gamma} | {gamma})
        return [0] + sizes if capped else sizes

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
            "verification": self.verification,
        }


# A short, lowercase name that `keras_hub.samplers.get` accepts (KerasHub's
# own "speculative" is its Gemma4-only sampler). As a config's `class_name`
# it builds this sampler; a bare string resolves to the class, which cannot
# carry the draft (`generate()` then says so, see `_NameOnly`).
REGISTERED_ALIAS = "speculative_decoding"
keras.saving.get_custom_objects()[REGISTERED_ALIAS] = SpeculativeSampler
