"""`SpeculativeSampler`'s constructor arguments, checked and resolved.

Every check here runs when the sampler is built, before anything is traced
or compiled, and fails with a `ValueError` that names the argument and says
how to fix it. `SpeculativeSampler.__init__` calls `resolve(...)` and stores
the `SamplerConfig` it returns.
"""

import copy
import math
import numbers
from typing import Any, NamedTuple, Optional

import keras
import numpy as np

from keras_specdec import model_utils, models, rejection
from keras_specdec.drafts import Draft

NEEDS_A_DRAFT = (
    "`SpeculativeSampler` needs a draft: "
    "`target.compile(sampler=keras_specdec.SpeculativeSampler(draft=...))` with "
    "a KerasHub model, a preset name or path, or a `keras_specdec.drafts.Draft`. "
    'A sampler name alone (`compile(sampler="speculative_decoding")`) cannot '
    "carry the draft; the name is for configs: `keras_hub.samplers.get("
    '{"class_name": "speculative_decoding", "config": {"draft": '
    '"<preset name or path>", ...}})`.'
)

GAMMA_SCHEDULES = ("theorem", "heuristic")


class SamplerConfig(NamedTuple):
    """The checked arguments of one `SpeculativeSampler`."""

    draft: Any  # a KerasHub CausalLM / Seq2SeqLM or a model-free Draft
    draft_preset: Optional[str]  # the preset name or path it came from
    num_speculative_tokens: Any  # int >= 1 or "auto"
    max_speculative_tokens: int
    gamma_schedule: str  # one of GAMMA_SCHEDULES
    cost_coefficient: Optional[float]  # c >= 0, or None (unused)
    verify_costs: Optional[dict]  # {gamma (int): v (float > 0)} or None
    base_sampler: Any  # a KerasHub sampler instance (rejection.get_base_sampler)


def resolve(
    draft,
    num_speculative_tokens,
    base_sampler,
    max_speculative_tokens,
    gamma_schedule,
    cost_coefficient,
    verify_costs,
    sampler_kwargs=None,
):
    """Check every argument of `SpeculativeSampler` (see its docstring).

    Args:
        draft, num_speculative_tokens, base_sampler, max_speculative_tokens,
            gamma_schedule, cost_coefficient, verify_costs: as given to
            `SpeculativeSampler`.
        sampler_kwargs: the other keyword arguments (for
            `keras_hub.samplers.Sampler`).

    Returns:
        A `SamplerConfig`: the draft loaded (a preset) or rebuilt (a
        model-free draft's config), ints as Python ints, the base sampler
        an instance, and c = 0 for a model-free draft under
        `"auto"` + `"theorem"` without a measured c.

    Raises:
        ValueError: naming the first argument that is wrong.
    """
    if draft is None:
        raise ValueError(NEEDS_A_DRAFT)
    if "temperature" in (sampler_kwargs or {}):
        raise ValueError(
            "`SpeculativeSampler` takes no `temperature`: set it on the "
            "base sampler, e.g. `base_sampler=keras_hub.samplers."
            "RandomSampler(temperature=0.7)`."
        )
    if keras.config.backend() != "jax":
        raise ValueError(
            "`keras_specdec.SpeculativeSampler` runs on the JAX backend, "
            f"but the Keras backend is `{keras.config.backend()}`. Set "
            "`KERAS_BACKEND=jax` before importing keras."
        )
    num_speculative_tokens = check_gamma(
        num_speculative_tokens, "num_speculative_tokens", allow_auto=True
    )
    max_speculative_tokens = check_gamma(
        max_speculative_tokens, "max_speculative_tokens"
    )
    if gamma_schedule not in GAMMA_SCHEDULES:
        raise ValueError(
            '`gamma_schedule` must be "theorem" (maximise Theorem 3.8 for '
            'the running alpha) or "heuristic" (HF\'s +2 / -1 schedule), '
            f"got {gamma_schedule!r}."
        )
    cost_coefficient = check_cost_coefficient(cost_coefficient)
    verify_costs = check_verify_costs(verify_costs)
    base_sampler = rejection.get_base_sampler(base_sampler)
    draft, draft_preset = resolve_draft(draft)
    if (
        num_speculative_tokens == "auto"
        and gamma_schedule == "theorem"
        and cost_coefficient is None
    ):
        if not isinstance(models.adapt(draft), models.ModelFreeAdapter):
            raise ValueError(
                '`num_speculative_tokens="auto"` with the "theorem" '
                "schedule needs the draft's cost coefficient c = time(draft "
                "step) / time(target step). Measure it once with "
                "`keras_specdec.analysis.measure_cost_coefficient(target, "
                "draft)` and pass `cost_coefficient=c`, or use "
                '`gamma_schedule="heuristic"`.'
            )
        cost_coefficient = 0.0  # a model-free draft costs ~nothing
    return SamplerConfig(
        draft=draft,
        draft_preset=draft_preset,
        num_speculative_tokens=num_speculative_tokens,
        max_speculative_tokens=max_speculative_tokens,
        gamma_schedule=gamma_schedule,
        cost_coefficient=cost_coefficient,
        verify_costs=verify_costs,
        base_sampler=base_sampler,
    )


def check_gamma(value, name, allow_auto=False):
    """An int >= 1 (Python or numpy integer, not bool), or "auto".

    >>> check_gamma(np.int64(4), "num_speculative_tokens")
    4
    """
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


def check_cost_coefficient(cost_coefficient):
    """None, or a finite real c >= 0 as a float."""
    if cost_coefficient is None:
        return None
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
    return float(cost_coefficient)


def check_verify_costs(verify_costs):
    """None, or `{gamma: v}` with int keys >= 1 and finite float values v > 0."""
    if verify_costs is None:
        return None
    verify_costs_given = verify_costs
    try:
        verify_costs = {_gamma_key(g): _real(v) for g, v in dict(verify_costs).items()}
    except (TypeError, ValueError):
        verify_costs = None
    if not verify_costs or not all(
        g >= 1 and math.isfinite(v) and v > 0 for g, v in verify_costs.items()
    ):
        raise ValueError(
            "`verify_costs` must map gamma (an int >= 1) to a finite v > 0, "
            "the time of a gamma + 1 token verify pass over one target step, "
            "e.g. `keras_specdec.analysis.measure_verify_costs(target, "
            f"range(1, 9))`; got {verify_costs_given!r}."
        )
    return verify_costs


def _gamma_key(gamma):
    """A `verify_costs` key as an int (configs store keys as strings)."""
    if isinstance(gamma, str):
        gamma = int(gamma)
    if isinstance(gamma, (bool, np.bool_)) or not isinstance(gamma, numbers.Integral):
        raise TypeError(gamma)
    return int(gamma)


def _real(value):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(value)
    return float(value)


def resolve_draft(draft):
    """`(draft, preset)`: the draft object and the preset name or path it
    was loaded from (None otherwise).

    A preset name or path round-trips by name; a model-free draft by its
    config (which holds its arrays). A model's config holds no weights: it
    is refused rather than rebuilt with random weights.
    """
    preset = draft if isinstance(draft, str) else None
    if isinstance(draft, str):
        draft = model_utils.load_causal_lm(draft)
    elif isinstance(draft, dict):
        draft = deserialize_draft(draft)
    models.adapt(draft)  # a clear error for anything the sampler cannot run
    model_utils.check_rollback(draft, "draft")
    return draft, preset


def deserialize_draft(config):
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
