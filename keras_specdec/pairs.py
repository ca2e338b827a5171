"""Target/draft model pairs trained by this project and shipped with it.

Each pair is two KerasHub presets (`save_to_preset` directories) inside the
package, so they load offline with the ordinary KerasHub call:

    path = keras_specdec.pairs.path("code", "target")
    target = keras_hub.models.CausalLM.from_preset(path)

or, for both at once, `target, draft = keras_specdec.pairs.load("code")`.

- ``"code"``: GPT-2 style causal LMs on Python source (the CPython standard
  library plus keras, keras_hub and jax sources), byte-level BPE with 4096
  tokens. Target 6 layers x 256 (5.9 M parameters), draft 2 layers x 128
  (0.99 M). `training.json` beside the presets records how far each was
  trained and its validation loss; `scripts/train_causal.py` continues
  training and `scripts/export_pair.py` refreshes the presets.
"""

import json
import os

PAIRS_DIR = os.path.join(os.path.dirname(__file__), "pairs")


def available():
    """Names of the shipped pairs."""
    if not os.path.isdir(PAIRS_DIR):
        return []
    return sorted(
        name
        for name in os.listdir(PAIRS_DIR)
        if os.path.isdir(os.path.join(PAIRS_DIR, name, "target"))
    )


def path(name, role):
    """Preset directory of `role` ("target" or "draft") of pair `name`."""
    if role not in ("target", "draft"):
        raise ValueError(f"`role` must be 'target' or 'draft', got {role!r}.")
    directory = os.path.join(PAIRS_DIR, name, role)
    if not os.path.isdir(directory):
        raise ValueError(f"No shipped pair named {name!r}; available: {available()}.")
    return directory


def training_summary(name):
    """What `training.json` records for pair `name` (tokens, losses, sizes)."""
    with open(os.path.join(PAIRS_DIR, name, "training.json")) as f:
        return json.load(f)


def load(name="code"):
    """`(target, draft)` KerasHub models of shipped pair `name`."""
    import keras_hub

    load_preset = keras_hub.models.CausalLM.from_preset
    return load_preset(path(name, "target")), load_preset(path(name, "draft"))
