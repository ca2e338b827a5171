"""keras_specdec: exact speculative decoding for KerasHub models on JAX.

import keras_specdec
target.compile(sampler=keras_specdec.SpeculativeSampler(draft=draft))
target.generate(...)
"""

import os

# keras_specdec runs on JAX: choose it unless the user already chose a backend
# (an explicit other backend gets a clear error from SpeculativeSampler).
os.environ.setdefault("KERAS_BACKEND", "jax")

from keras_specdec import (
    analysis,  # noqa: E402
    distill,  # noqa: E402
    gemma4,  # noqa: E402 (registers the Gemma4 assistants' adapter)
    head_distill,  # noqa: E402
    heads,  # noqa: E402
    pairs,  # noqa: E402
)
from keras_specdec.speculative_sampler import SpeculativeSampler  # noqa: E402

__version__ = "0.1.0"

from keras_specdec.drafts import (
    BigramDraft,  # noqa: E402
    Draft,  # noqa: E402
    PromptLookupDraft,  # noqa: E402
    UnigramDraft,  # noqa: E402
)
from keras_specdec.heads import DraftHead  # noqa: E402

__all__ = [
    "BigramDraft",
    "Draft",
    "DraftHead",
    "PromptLookupDraft",
    "SpeculativeSampler",
    "UnigramDraft",
    "analysis",
    "distill",
    "drafts",
    "gemma4",
    "head_distill",
    "heads",
    "pairs",
    "__version__",
]
