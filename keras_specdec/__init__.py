"""keras_specdec: exact speculative decoding for KerasHub models on JAX.

import keras_specdec
target.compile(sampler=keras_specdec.SpeculativeSampler(draft=draft))
target.generate(...)
"""

from keras_specdec.speculative_sampler import SpeculativeSampler

__version__ = "0.1.0"

__all__ = ["SpeculativeSampler", "__version__"]
