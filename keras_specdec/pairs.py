"""Target/draft model pairs trained by this project and shipped with it.

Each pair is two KerasHub presets (`save_to_preset` directories) inside the
package, so they load offline with the ordinary KerasHub call:

    path = keras_specdec.pairs.path("code", "target")
    target = keras_hub.models.CausalLM.from_preset(path)

or, for both at once, `target, draft = keras_specdec.pairs.load("code")`.

- ``"code"``: GPT-2 style causal LMs on Python source (the CPython standard
  library plus keras, keras_hub, jax, numpy, scipy and matplotlib sources),
  byte-level BPE with 4096 tokens. Target 10 layers x 256 (9.1 M
  parameters), draft 2 layers x 128 (0.99 M), and a trained EAGLE-style
  draft head (``code/head``, `keras_specdec.heads.DraftHead`: one decoder
  layer reading the target's hidden states; ``load("code", draft="head")``).
- ``"ende"``: T5 encoder-decoders (`T5Seq2SeqLM`, SentencePiece
  `T5Tokenizer`, encoder and decoder sequence length 64) translating English
  to German: target 4 + 4 layers x 128 (2.1 M), draft 1 + 1 layers x 128
  (0.9 M); held-out sentence pairs in ``ende/test.en`` / ``ende/test.de``
  (one sentence a line), read by `held_out_pairs("ende")`.

Weights are stored in float16 on disk (`model.weights.h5`) and load into
float32 models (the presets' dtype policy). `training.json` beside each pair
records how it was trained, its validation loss (and BLEU for "ende");
`scripts/training/train_causal.py` / `train_t5.py` continue training and
`scripts/training/export_pair.py` / `export_t5_pair.py` refresh the presets.

`load` returns `keras_hub.models.Seq2SeqLM` models for encoder-decoder pairs
and `keras_hub.models.CausalLM` models otherwise.
"""

import json
import os

PAIRS_DIR = os.path.join(os.path.dirname(__file__), "pairs")

# keras-hub 0.32's Seq2SeqLMPreprocessor does not save its sequence lengths
# (a loaded preset gets the 1024 default), so `load` restores the lengths the
# encoder-decoder pairs were trained with.
SEQ2SEQ_SEQUENCE_LENGTHS = {"ende": 64}


def available():
    """Names of the shipped pairs."""
    if not os.path.isdir(PAIRS_DIR):
        return []
    return sorted(
        name
        for name in os.listdir(PAIRS_DIR)
        if os.path.isdir(os.path.join(PAIRS_DIR, name, "target"))
    )


def pair_dir(name):
    """Directory of pair `name`: a shipped pair's name, or a directory laid out
    like one (``target/``, ``draft/``, optional ``test.*``), given as a path."""
    if os.sep in name or name.startswith("."):
        return name
    return os.path.join(PAIRS_DIR, name)


def path(name, role):
    """Preset directory of `role` ("target", "draft" or "head") of pair `name`."""
    if role not in ("target", "draft", "head"):
        raise ValueError(f"`role` must be 'target', 'draft' or 'head', got {role!r}.")
    directory = os.path.join(pair_dir(name), role)
    if not os.path.isdir(directory):
        if role == "head" and os.path.isdir(os.path.join(pair_dir(name), "target")):
            raise ValueError(
                f"Pair {name!r} ships no draft head ({directory} is missing); "
                "pairs with one: "
                f"{[n for n in available() if _has_head(n)]}."
            )
        raise ValueError(f"No shipped pair named {name!r}; available: {available()}.")
    return directory


def training_summary(name):
    """What `training.json` records for pair `name` (tokens, losses, sizes)."""
    with open(os.path.join(pair_dir(name), "training.json")) as f:
        return json.load(f)


def is_seq2seq(preset_dir):
    """Whether the KerasHub preset in `preset_dir` is an encoder-decoder task."""
    task_file = os.path.join(preset_dir, "task.json")
    if not os.path.isfile(task_file):
        return False
    with open(task_file) as f:
        return json.load(f).get("class_name", "").endswith("Seq2SeqLM")


def load(name="code", draft="model"):
    """`(target, draft)` models of shipped pair `name`.

    `keras_hub.models.Seq2SeqLM`s for an encoder-decoder pair (``"ende"``),
    `keras_hub.models.CausalLM`s otherwise.

    Args:
        name: the pair.
        draft: ``"model"`` (default): the pair's draft language model;
            ``"head"``: its trained EAGLE-style draft head
            (`keras_specdec.heads.DraftHead`, reads the target's hidden
            states), shipped for ``"code"``.

    Example:

    ```python
    target, head = keras_specdec.pairs.load("code", draft="head")
    ```
    """
    import keras_hub

    if draft not in ("model", "head"):
        raise ValueError(f"`draft` must be 'model' or 'head', got {draft!r}.")
    if draft == "head":
        from keras_specdec.heads import DraftHead

        head_dir = path(name, "head")
        (target,) = _load_roles(name, ("target",), keras_hub)
        return target, DraftHead.from_preset(head_dir)
    return _load_roles(name, ("target", "draft"), keras_hub)


def _load_roles(name, roles, keras_hub):
    models = []
    for role in roles:
        directory = path(name, role)
        task_cls = (
            keras_hub.models.Seq2SeqLM
            if is_seq2seq(directory)
            else keras_hub.models.CausalLM
        )
        model = task_cls.from_preset(directory)
        length = SEQ2SEQ_SEQUENCE_LENGTHS.get(os.path.basename(os.path.normpath(name)))
        if length and getattr(model, "preprocessor", None) is not None:
            model.preprocessor.encoder_sequence_length = length
            model.preprocessor.decoder_sequence_length = length
        models.append(model)
    return tuple(models)


def held_out_pairs(name="ende", split="test", source="en", target="de"):
    """Held-out `(source, reference)` sentence pairs shipped with pair `name`.

    Reads ``<pair dir>/<split>.<source>`` and ``<pair dir>/<split>.<target>``
    (one sentence a line, aligned by line). Raises `FileNotFoundError` when
    the pair ships none.
    """
    files = [
        os.path.join(pair_dir(name), f"{split}.{lang}") for lang in (source, target)
    ]
    for file in files:
        if not os.path.isfile(file):
            raise FileNotFoundError(
                f"Pair {name!r} ships no held-out {split!r} split ({file} is missing)."
            )
    lines = []
    for file in files:
        with open(file, encoding="utf-8") as f:
            lines.append([line.rstrip("\n") for line in f])
    if len(lines[0]) != len(lines[1]):
        raise ValueError(f"{files[0]} and {files[1]} differ in length.")
    return list(zip(*lines))


def benchmark_prompts(name):
    """Prompts from pair `name`'s held-out data, for benchmarks and demos.

    Encoder-decoder pairs: the held-out source sentences of at least 8 words
    (`held_out_pairs`). Causal pairs: ``<pair dir>/prompts.json``, openings of
    functions from files the models were never trained on, chosen by a fixed
    rule that does not look at the models' outputs
    (`scripts/data/make_code_prompts.py`).
    """
    if is_seq2seq(path(name, "target")):
        sources = [src for src, _ in held_out_pairs(name)]
        return [src for src in sources if len(src.split()) >= 8] or sources
    file = os.path.join(pair_dir(name), "prompts.json")
    if not os.path.isfile(file):
        raise FileNotFoundError(f"Pair {name!r} ships no prompts ({file}).")
    with open(file, encoding="utf-8") as f:
        return [entry["prompt"] for entry in json.load(f)]


def _has_head(name):
    return os.path.isdir(os.path.join(PAIRS_DIR, name, "head"))
