"""`SpeculativeSampler`: exact speculative decoding inside `generate()`."""

import copy
import math
import numbers

import keras
import keras_hub
import numpy as np
from keras import ops, random

from keras_specdec import model_utils, rejection, rounds
from keras_specdec.drafts import Draft

# `verification=`: how a round's proposals are judged (`rounds.accept`).
VERIFICATIONS = ("token", "block")

# Order of the counters in the `stats` variable (`rounds.SpeculativeStats`).
STAT_NAMES = rounds.SpeculativeStats._fields


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

    Batches: every row advances at its own pace. Each row has its own
    cache position (`model_utils.decode_rows`: the model's cached call
    `jax.vmap`-ed over rows, each with its own index), so a round moves each
    row by its own accepted count + 1 and a row's tokens never depend on its
    neighbours' acceptances or random draws. Ragged prompts start at their
    own ends; prompt tokens are never overwritten. Rows that are full (or,
    with stop tokens, past the end of the output) judge no proposals and do
    not move; the loop ends when every row is. With stop tokens the output is
    exactly KerasHub's: rows keep generating until the last row has produced
    its first stop token, as KerasHub's loop does. The round's phases are
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
        verification="block",
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
        if verification not in VERIFICATIONS:
            raise ValueError(
                '`verification` must be "token" (each draft token tested on its '
                'own, Leviathan et al.) or "block" (the draft block judged '
                "jointly, Sun et al. 2024: same distribution, never fewer "
                f"accepted tokens in expectation), got {verification!r}."
            )
        self.verification = verification
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
        if mask is None:
            mask = ops.zeros_like(prompt, dtype="bool")
        prompt_mask = ops.cast(mask, "bool")  # (batch, max_length)
        positions = ops.arange(max_length, dtype="int32")[None, :]

        # 1. Each row starts at its own first non-prompt position (KerasHub's
        #    `index` is the shortest prompt's length).
        open_slot = ops.logical_and(
            positions >= ops.cast(index, "int32"), ops.logical_not(prompt_mask)
        )
        row_index = ops.where(
            ops.any(open_slot, axis=-1),
            ops.argmax(ops.cast(open_slot, "int32"), axis=-1),
            max_length,
        )
        row_index = ops.cast(row_index, "int32")  # (batch,)

        # 2. The decoding states: the target's cache from `generate()`, the
        #    draft's own.
        target_state = model_utils.target_state(model, cache)
        draft_state = model_utils.init_state(self.draft, prompt, prompt_mask)
        setup = rounds.RoundSetup(
            target=model,
            draft=self.draft,
            base_sampler=self.base_sampler,
            max_length=max_length,
            # Buffers are gamma positions longer than max_length, so a window
            # of gamma + 1 tokens at any index <= max_length is never clamped.
            # Model caches keep max_length: every model call clamps its own
            # start so it never writes past the cache.
            forced=ops.pad(prompt_mask, [[0, 0], [0, gamma]]),
            target_axes=model_utils.state_batch_axes(
                model, target_state, prompt, prompt_mask
            ),
            draft_axes=model_utils.state_batch_axes(
                self.draft, draft_state, prompt, prompt_mask
            ),
            stop_token_ids=stop_token_ids,
            # Rounds of several sizes ("auto", or a draft that proposes
            # fewer) draft in a loop to the round's size.
            loop_draft_steps=adaptive or _proposes_fewer(self.draft),
            verification=self.verification,
        )
        # 3. Rows with an empty prompt take KerasHub's own first step.
        seed = None if greedy else self.seed_generator.next()
        first_token, empty = rounds.plain_step(
            setup, next, prompt, cache, row_index, seed
        )
        tokens = ops.where(
            ops.logical_and(positions == 0, empty[:, None]),
            first_token[:, None],
            prompt,
        )
        row_index = ops.where(empty, 1, row_index)

        schedule = self._schedule(gamma)
        state = rounds.RoundState(
            tokens=ops.pad(tokens, [[0, 0], [0, gamma]]),
            index=row_index,
            target_state=target_state,
            draft_state=draft_state,
            stats=rounds.SpeculativeStats.zeros()._replace(
                emitted_tokens=ops.sum(ops.cast(empty, "int32"))
            ),
            schedule_state=schedule.init(),
        )
        verify_gammas = self._verify_gammas(gamma) if adaptive else [gamma]
        # A draft that can say it has fewer (or no) proposals for a row
        # (prompt lookup) caps that row's num_proposed; the round then takes
        # the smallest size covering every row's proposals, 0 being a plain
        # target step.
        capped = _proposes_fewer(self.draft)
        if capped:
            verify_gammas = [0] + self._verify_gammas(gamma)
        # Random draws per round: one per proposal, the acceptance uniforms,
        # the recovered / bonus token; drawn before a `switch` over round
        # sizes (its branches must not advance the seed generator).
        num_draws = 0 if greedy else gamma + 2

        def cond(state):
            return ops.any(rounds.active_rows(setup, state))

        def body(state):
            # 4. The round's size (batch level) and each row's proposals.
            round_gamma = schedule.next_gamma(state.schedule_state, state.stats)
            limit = rounds.row_limits(setup, state)
            active = state.index < limit
            num_proposed = ops.clip(
                ops.minimum(round_gamma, limit - 1 - state.index), 0, gamma
            )  # (batch,)
            if capped:
                num_matched = self.draft.max_proposals(
                    state.draft_state, state.tokens, state.index, gamma
                )  # (batch,)
                num_proposed = ops.minimum(num_proposed, num_matched)
                round_gamma = ops.max(num_proposed)
            seeds = None
            if num_draws:
                seeds = ops.stack(
                    [self.seed_generator.next() for _ in range(num_draws)]
                )  # (num_draws, 2)

            # 5. Propose, verify, accept, commit. A fixed gamma: one round
            #    of that size. "auto": the draft proposes round_gamma tokens
            #    (a `fori_loop` to round_gamma, buffers of the largest
            #    gamma), then verify / accept / commit run at the smallest
            #    size k in `verify_gammas` covering round_gamma (one
            #    `lax.switch` branch per size holds only those phases).
            if len(verify_gammas) == 1:
                state, all_accepted = rounds.speculative_round(
                    setup, state, gamma, num_proposed, active, seeds
                )
            else:
                state, (draft_token_ids, draft_probs) = rounds.propose(
                    setup, state, gamma, seeds, num_steps=round_gamma
                )

                def judge_at_size(k):
                    def run(state, draft_token_ids, draft_probs, num_proposed,
                            active, seeds):  # fmt: skip
                        return rounds.judge(
                            setup, state, k, draft_token_ids, draft_probs,
                            num_proposed, active, seeds,
                        )  # fmt: skip

                    return run

                bucket = ops.sum(
                    ops.cast(
                        ops.convert_to_tensor(verify_gammas, "int32") < round_gamma,
                        "int32",
                    )
                )
                state, all_accepted = ops.switch(
                    bucket,
                    [judge_at_size(k) for k in verify_gammas],
                    state,
                    draft_token_ids,
                    draft_probs,
                    num_proposed,
                    active,
                    seeds,
                )
            # 6. The schedule learns from the round.
            schedule_state = schedule.update(state.schedule_state, all_accepted)
            return (state._replace(schedule_state=schedule_state),)

        (state,) = self.run_loop(
            cond,
            body,
            loop_vars=(state,),
            maximum_iterations=max_length,
            model=model,
        )
        self._stats.assign(self._stats + state.stats.to_vector())
        return rounds.output_tokens(setup, state, prompt)

    def _schedule(self, gamma):
        """The gamma schedule of this sampler (`rounds.*Schedule`)."""
        if self.num_speculative_tokens != "auto":
            return rounds.FixedSchedule(gamma)
        if self.gamma_schedule == "heuristic":
            return rounds.HeuristicSchedule(gamma)
        candidates = self._theorem_candidates(self._verify_gammas(gamma))
        return rounds.TheoremSchedule(
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
            "verification": self.verification,
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


def _proposes_fewer(draft):
    """Whether `draft` overrides `Draft.max_proposals`."""
    return (
        isinstance(draft, Draft)
        and type(draft).max_proposals is not Draft.max_proposals
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
