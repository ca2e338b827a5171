"""Runs speculative `generate()` under `keras.distribution` on 8 virtual CPU
devices and prints one JSON object of results (read by `sharding_test.py`).

Usage: `python tests/sharding_worker.py SCENARIO` with SCENARIO one of
`model_parallel`, `model_parallel_programs`, `data_parallel`.

XLA's host device count must be set before jax initialises, so this runs in
its own process; the test sets `XLA_FLAGS` and `KERAS_BACKEND` in its env.
"""

import json
import os
import re
import sys

# Only when run as a script: pytest imports this module (doctest collection)
# inside its workers, whose environment later processes (the notebook's
# kernel) inherit.
if __name__ == "__main__":
    os.environ.setdefault("KERAS_BACKEND", "jax")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
        os.environ["XLA_FLAGS"] = (
            os.environ.get("XLA_FLAGS", "")
            + " --xla_force_host_platform_device_count=8"
        )

import jax  # noqa: E402
import keras  # noqa: E402
import keras_hub  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tiny_models import noisy_copy  # noqa: E402

import keras_specdec  # noqa: E402

VOCAB = 48
MAX_LENGTH = 20
COLLECTIVES = (
    "all-gather",
    "all-reduce",
    "reduce-scatter",
    "all-to-all",
    "collective-permute",
)


def gemma(size, seed):
    """Tiny Gemma. Every sharded dim is divisible by the mesh axes it is
    sharded over (jax requires it): with `GemmaBackbone.get_layout_map`
    heads and vocab go over "model" (4), hidden and intermediate over
    "batch" (2), so num_key_value_heads = num_query_heads = 4 (MHA, as in
    Gemma 7B)."""
    keras.utils.set_random_seed(seed)
    layers, hidden, inter = (2, 32, 64) if size == "target" else (1, 16, 32)
    backbone = keras_hub.models.GemmaBackbone(
        vocabulary_size=VOCAB,
        num_layers=layers,
        num_query_heads=4,
        num_key_value_heads=4,
        hidden_dim=hidden,
        intermediate_dim=inter,
        head_dim=hidden // 4,
    )
    return keras_hub.models.GemmaCausalLM(backbone=backbone, preprocessor=None)


def rebuild(model, weights):
    """The same architecture built in the current distribution scope (its
    variables get the scope's layouts), with `weights` assigned."""
    copy = model.__class__.from_config(model.get_config())
    copy.set_weights(weights)
    return copy


def batch(prompts):
    token_ids = np.zeros((len(prompts), MAX_LENGTH), "int32")
    padding_mask = np.zeros((len(prompts), MAX_LENGTH), bool)
    for row, prompt in enumerate(prompts):
        token_ids[row, : len(prompt)] = prompt
        padding_mask[row, : len(prompt)] = True
    return {"token_ids": token_ids, "padding_mask": padding_mask}


def generate(model, sampler, inputs):
    model.compile(sampler=sampler)
    return np.asarray(model.generate(inputs, stop_token_ids=None)["token_ids"])


def compiled_generate_text(model, inputs):
    """HLO text of the program `generate()` runs: the `jax.jit` function that
    KerasHub's `CausalLM.make_generate_function` closes over, lowered with the
    same (distributed) inputs and variable values `generate()` passes."""
    fn = model.make_generate_function()
    jitted = next(
        c.cell_contents for c in fn.__closure__ if hasattr(c.cell_contents, "lower")
    )
    distribution = keras.distribution.distribution()

    def distribute(x):
        x = keras.ops.convert_to_tensor(x)
        if distribution is None:
            return x
        layout = distribution.get_data_layout(x.shape)
        return keras.distribution.distribute_tensor(x, layout)

    inputs = {k: distribute(v) for k, v in inputs.items()}
    state = (
        [v.value for v in model.sampler.variables],
        [v.value for v in model.trainable_variables],
        [v.value for v in model.non_trainable_variables],
    )
    compiled = jitted.lower(inputs, None, state).compile()
    # The shardings the executable expects its weight arguments in: equal
    # to the variables' own shardings means no resharding at the call.
    # `input_shardings` is ((inputs, state), {}): the static arg is dropped.
    (args, _) = compiled.input_shardings
    sampler_shardings, weight_shardings, _ = args[-1]
    mismatched = [
        v.path
        for variables, shardings in (
            (model.sampler.variables, sampler_shardings),
            (model.trainable_variables, weight_shardings),
        )
        for v, s in zip(variables, shardings)
        # None: an argument the executable does not read (the call-count
        # variable, assigned outside the compiled loop): nothing to reshard.
        if s is not None and not s.is_equivalent_to(v.value.sharding, len(v.shape))
    ]
    return compiled.as_text(), mismatched


def collectives(hlo_text):
    """[(op, output shape, in_loop)] of every collective in the compiled HLO
    text (a collective with a tuple output gives one entry per element);
    in_loop: the op comes from the body of `generate()`'s decoding loop
    (its jax name holds "/while/body/")."""
    found = []
    op = re.compile(r"=\s+(.*?)\s+(" + "|".join(COLLECTIVES) + r")(-start)?\(")
    shape = re.compile(r"[a-z]+[0-9]*\[[0-9,]*\]")
    for line in hlo_text.splitlines():
        m = op.search(line)
        if m:
            in_loop = "/while/body/" in line
            for s in shape.findall(re.sub(r"\{[^}]*\}", "", m.group(1))):
                found.append((m.group(2), s, in_loop))
    return found


def sharded_weight_shapes(model):
    """HLO shape strings (e.g. "f32[48,32]") of the model's weights that are
    sharded (their per-device shard is smaller than the whole)."""
    shapes = {}
    for v in model.weights:
        sharding = v.value.sharding
        if sharding.shard_shape(v.shape) != tuple(v.shape):
            shape = "f32[" + ",".join(str(d) for d in v.shape) + "]"
            shapes[shape] = v.path
    return shapes


def model_parallel_models(with_reference):
    """Target (sharded by `GemmaBackbone.get_layout_map` over a 2 "batch" x 4
    "model" mesh) and drafts (replicated, sharded, unscoped), all with the
    weights of models built without distribution from fixed seeds; plus the
    undistributed greedy output of the target when `with_reference`."""
    prompts = [[1, 2, 3], [4, 5, 6, 7, 8, 9]]  # batch 2: the "batch" axis
    inputs = batch(prompts)
    target0 = gemma("target", seed=1)
    draft0 = noisy_copy(target0, noise=0.5, seed=2)  # agrees often
    small0 = gemma("draft", seed=3)  # a smaller random draft
    reference = generate(target0, "greedy", inputs) if with_reference else None

    mesh = keras.distribution.DeviceMesh(
        shape=(2, 4), axis_names=("batch", "model"), devices=jax.devices()
    )
    layout_map = keras_hub.models.GemmaBackbone.get_layout_map(mesh)
    distribution = keras.distribution.ModelParallel(
        layout_map=layout_map, batch_dim_name="batch"
    )
    # Replicated draft: a layout map without entries replicates every
    # variable over the mesh.
    replicated = keras.distribution.ModelParallel(
        layout_map=keras.distribution.LayoutMap(mesh), batch_dim_name="batch"
    )
    with replicated.scope():
        draft_replicated = rebuild(draft0, draft0.get_weights())
    keras.distribution.set_distribution(distribution)
    models = {
        "target": rebuild(target0, target0.get_weights()),
        # A draft built before any distribution was set: its variables are
        # uncommitted single-device arrays, and jit replicates them.
        "draft_unscoped": draft0,
        "draft_replicated": draft_replicated,
        "draft_sharded": rebuild(draft0, draft0.get_weights()),
        "small_draft_sharded": rebuild(small0, small0.get_weights()),
    }
    return models, inputs, reference


GAMMAS = {
    "draft_unscoped": 3,
    "draft_replicated": 3,
    "draft_sharded": 3,
    "small_draft_sharded": 2,
}


def model_parallel():
    """Greedy outputs under ModelParallel, and the undistributed reference."""
    models, inputs, reference = model_parallel_models(with_reference=True)
    target = models["target"]
    results = {
        "num_devices": len(jax.devices()),
        "reference": reference.tolist(),
        "specs": {
            name: {v.path: str(v.value.sharding.spec) for v in model.weights}
            for name, model in models.items()
            if name != "draft_unscoped"
        },
        "cases": {
            "plain_greedy": {"token_ids": generate(target, "greedy", inputs).tolist()}
        },
    }
    for name, gamma in GAMMAS.items():
        sampler = keras_specdec.SpeculativeSampler(models[name], gamma)
        out = generate(target, sampler, inputs)
        results["cases"][name] = {"token_ids": out.tolist(), "stats": sampler.stats()}
    return results


def model_parallel_programs():
    """Collectives in the compiled generate programs under ModelParallel."""
    models, inputs, _ = model_parallel_models(with_reference=False)
    target = models["target"]
    shapes = {}
    for name in ("target", "draft_sharded", "small_draft_sharded"):
        shapes.update(sharded_weight_shapes(models[name]))
    results = {"sharded_weight_shapes": shapes, "programs": {}}
    for name in (
        "plain_greedy",
        "draft_replicated",
        "draft_sharded",
        "small_draft_sharded",
    ):
        if name == "plain_greedy":
            sampler = "greedy"
        else:
            sampler = keras_specdec.SpeculativeSampler(models[name], GAMMAS[name])
        target.compile(sampler=sampler)
        text, mismatch = compiled_generate_text(target, inputs)
        results["programs"][name] = {
            "collectives": collectives(text),
            "weight_sharding_mismatch": mismatch,
            "num_partitions": int(re.search(r"num_partitions=(\d+)", text).group(1)),
        }
    return results


def data_parallel():
    rng = np.random.default_rng(0)
    prompts = [list(rng.integers(1, VOCAB, size=n)) for n in (1, 3, 5, 2, 7, 4, 6, 2)]
    inputs = batch([[int(t) for t in p] for p in prompts])
    target0 = gemma("target", seed=1)
    draft0 = noisy_copy(target0, noise=0.5, seed=2)
    reference = generate(target0, "greedy", inputs)
    distribution = keras.distribution.DataParallel(devices=jax.devices())
    keras.distribution.set_distribution(distribution)
    target = rebuild(target0, target0.get_weights())
    draft = rebuild(draft0, draft0.get_weights())
    sampler = keras_specdec.SpeculativeSampler(draft, 3)
    out = generate(target, sampler, inputs)
    text, _ = compiled_generate_text(target, inputs)
    return {
        "collectives": collectives(text),
        "num_devices": len(jax.devices()),
        "reference": reference.tolist(),
        "token_ids": out.tolist(),
        "stats": sampler.stats(),
        "target_specs": {v.path: str(v.value.sharding.spec) for v in target.weights},
        "data_spec": str(distribution.get_data_layout((8, MAX_LENGTH)).axes),
    }


if __name__ == "__main__":
    scenarios = {
        "model_parallel": model_parallel,
        "model_parallel_programs": model_parallel_programs,
        "data_parallel": data_parallel,
    }
    print("RESULTS " + json.dumps(scenarios[sys.argv[1]]()))
