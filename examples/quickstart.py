"""keras_specdec in five minutes, on the model pair shipped with the package.

    python examples/quickstart.py

Greedy speculative output equals the target's own greedy output; sampled
output follows the target's distribution exactly (here top-p with
temperature); a model-free prompt-lookup draft plugs in the same way.
"""

import argparse
import os

# No options; `--help` prints this docstring and exits before loading models.
argparse.ArgumentParser(
    description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
).parse_args()

os.environ.setdefault("KERAS_BACKEND", "jax")

import keras_hub  # noqa: E402

import keras_specdec  # noqa: E402

target = keras_hub.models.CausalLM.from_preset(
    keras_specdec.pairs.path("code", "target")
)
draft = keras_hub.models.CausalLM.from_preset(keras_specdec.pairs.path("code", "draft"))
prompt = "def read_lines(path):\n    "

target.compile(sampler="greedy")
plain = target.generate(prompt, max_length=64)

sampler = keras_specdec.SpeculativeSampler(draft=draft, num_speculative_tokens=4)
target.compile(sampler=sampler)
fast = target.generate(prompt, max_length=64)
print(fast)
print("identical to greedy:", fast == plain, sampler.stats())

top_p = keras_hub.samplers.TopPSampler(p=0.9, temperature=0.7, seed=0)
sampler = keras_specdec.SpeculativeSampler(draft, 4, base_sampler=top_p)
target.compile(sampler=sampler)
print(target.generate(prompt, max_length=64))
print("top-p:", sampler.stats())

lookup = keras_specdec.PromptLookupDraft(target.backbone.vocabulary_size, max_ngram=3)
target.compile(sampler=keras_specdec.SpeculativeSampler(lookup, "auto"))
print(target.generate(prompt, max_length=64) == plain, target.sampler.stats())
