"""An EAGLE-style draft head for any KerasHub causal LM.

EAGLE (Li et al., 2024) drafts with one transformer layer that reads the
target's own features. At position t the head's input is
(embedding(x_t), h_{t-1}): the token at t and the target's final hidden
state at t - 1 (the state whose logits predicted x_t). A dense layer fuses
the two (2d -> d), one decoder layer with its own KV cache mixes the
positions, and a layer norm gives the head's estimate h^_t of the target's
h_t; the target's own (frozen, copied) output embedding turns h^_t into
logits for x_{t+1}. At draft steps 2..gamma the true h_t is not known yet,
so the head feeds itself h^_t.

Hidden state convention: KerasHub's ``call_with_cache`` returns ``(logits,
hidden_states, cache)`` with ``hidden_states`` the backbone's output AFTER
its final layer norm, the vector the output embedding multiplies (GPT-2:
``backbone.layer_norm(x)``, then ``token_embedding(x, reverse=True)``). The
head is trained on and fed exactly that tensor.

The head copies the target's token embedding (and, if untied, output
projection) and, where the target has one, its learned position table, so a
saved head is self-contained; the copied embedding stays frozen.

Example:

```python
import keras_specdec
target, _ = keras_specdec.pairs.load("code")
head = keras_specdec.heads.DraftHead.from_target(target)
cache = head.build_cache(batch_size=1, max_length=64)
```
"""

import json
import os

import keras
from keras import ops

CACHE_MARGIN = 33  # positions past max_length so windows near the end never clamp
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.weights.h5"


def target_features(target, token_ids, padding_mask=None):
    """The target's final hidden states and logits for a whole sequence.

    Args:
        target: a KerasHub `CausalLM` whose backbone returns the final (post
            layer norm) hidden states and has a `token_embedding` with
            ``reverse=True`` (GPT-2, Llama, Gemma, ... families).
        token_ids: int `(batch, length)`.
        padding_mask: bool `(batch, length)`, default all True.

    Returns:
        `(hidden, logits)`: `(batch, length, d)` and `(batch, length, vocab)`,
        the same tensors `call_with_cache` returns position by position.
    """
    token_ids = ops.convert_to_tensor(token_ids, "int32")
    if padding_mask is None:
        padding_mask = ops.ones_like(token_ids, dtype="bool")
    padding_mask = ops.convert_to_tensor(padding_mask, "bool")
    hidden = target.backbone(
        {"token_ids": token_ids, "padding_mask": padding_mask}, training=False
    )  # (batch, length, d)
    logits = target.backbone.token_embedding(hidden, reverse=True)
    return hidden, logits


def shift_right(hidden):
    """`(batch, length, d)` h_t -> h_{t-1} (zeros at position 0)."""
    return ops.pad(hidden[:, :-1], [[0, 0], [1, 0], [0, 0]])


@keras.saving.register_keras_serializable(package="keras_specdec")
class DraftHead(keras.Model):
    """EAGLE-1 draft head: (embedding(x_t), h_{t-1}) -> (logits for x_{t+1}, h^_t).

    Build one for a target with `DraftHead.from_target(target)` (copies the
    target's embeddings), train it with `keras_specdec.head_distill.distill_head`,
    save it with `save_to_preset(dir)` and load it with
    `DraftHead.from_preset(dir)`. A head made from a bare config
    (`from_config`) has no trained weights until weights are loaded into it;
    `check_weights()` (called by the sampler's adapter) refuses such a head.

    Args:
        vocabulary_size: the target's vocabulary size.
        hidden_dim: the target's hidden size d (h_t's width).
        num_heads: attention heads of the head's decoder layer.
        intermediate_dim: feed-forward width of the decoder layer.
        max_sequence_length: positions of the learned position table
            (the target's plus headroom; decoding clamps beyond it).
        tie_weights: whether the output projection is the token embedding
            (the target's setting).
        logit_soft_cap: the target's final logit soft cap, or None.
        layer_norm_epsilon: epsilon of the layer norms.
        activation: the decoder layer's feed-forward activation.
        target_class: name of the target's task class (informational).

    Example:

    ```python
    head = DraftHead.from_target(target)
    cache = head.build_cache(batch_size=2, max_length=64)
    logits, hidden, cache = head.call_with_cache(token_ids, target_hidden, cache, 0)
    ```
    """

    def __init__(
        self,
        vocabulary_size,
        hidden_dim,
        num_heads=4,
        intermediate_dim=None,
        max_sequence_length=512 + CACHE_MARGIN,
        tie_weights=True,
        logit_soft_cap=None,
        layer_norm_epsilon=1e-5,
        activation="gelu",
        target_class=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        import keras_hub

        if hidden_dim % num_heads:
            raise ValueError(
                f"DraftHead's hidden_dim ({hidden_dim}) must be divisible by "
                f"num_heads ({num_heads}); pick num_heads dividing it."
            )
        self.vocabulary_size = int(vocabulary_size)
        self.hidden_dim = int(hidden_dim)
        self.num_heads = int(num_heads)
        self.intermediate_dim = int(intermediate_dim or 4 * hidden_dim)
        self.max_sequence_length = int(max_sequence_length)
        self.tie_weights = bool(tie_weights)
        self.logit_soft_cap = logit_soft_cap
        self.layer_norm_epsilon = float(layer_norm_epsilon)
        self.activation = activation
        self.target_class = target_class
        embedding_kwargs = {}
        if logit_soft_cap is not None:
            embedding_kwargs["logit_soft_cap"] = logit_soft_cap
        self.token_embedding = _reversible_embedding_class()(
            self.vocabulary_size,
            self.hidden_dim,
            tie_weights=self.tie_weights,
            trainable=False,
            name="token_embedding",
            **embedding_kwargs,
        )
        self.position_embedding = keras_hub.layers.PositionEmbedding(
            sequence_length=self.max_sequence_length, name="position_embedding"
        )
        self.fuse = keras.layers.Dense(self.hidden_dim, name="fuse")
        self.decoder = keras_hub.layers.TransformerDecoder(
            intermediate_dim=self.intermediate_dim,
            num_heads=self.num_heads,
            activation=activation,
            layer_norm_epsilon=self.layer_norm_epsilon,
            normalize_first=True,
            name="decoder",
        )
        self.feature_norm = keras.layers.LayerNormalization(
            epsilon=self.layer_norm_epsilon, name="feature_norm"
        )
        self.build(None)

    def build(self, input_shape=None):
        d = self.hidden_dim
        self.token_embedding.build((None, None))
        self.position_embedding.build((None, None, d))
        self.fuse.build((None, None, 2 * d))
        self.decoder.build((None, None, d))
        self.feature_norm.build((None, None, d))
        # 1.0 once the target's embeddings are copied in or weights are
        # loaded; 0.0 for a head built from a bare config. Saved with the
        # weights, so every loading path (preset, load_weights, .keras) sets it.
        self.has_weights = self.add_weight(
            shape=(),
            initializer="zeros",
            trainable=False,
            name="has_weights",
        )
        self._weights_set = False  # Python mirror of has_weights
        self.built = True

    def load_weights(self, *args, **kwargs):
        super().load_weights(*args, **kwargs)
        self._weights_set = float(ops.convert_to_numpy(self.has_weights)) == 1.0

    def set_weights(self, weights):
        super().set_weights(weights)
        self._weights_set = float(ops.convert_to_numpy(self.has_weights)) == 1.0

    @property
    def head_dim(self):
        return self.hidden_dim // self.num_heads

    # ------------------------------------------------------------------ forward

    def _inputs(self, token_ids, target_hidden, start_index):
        tokens = self.token_embedding(token_ids)  # (batch, n, d)
        positions = self.position_embedding(tokens, start_index=start_index)
        x = ops.concatenate(
            [
                tokens + ops.cast(positions, tokens.dtype),
                ops.cast(target_hidden, tokens.dtype),
            ],
            axis=-1,
        )  # (batch, n, 2d)
        return self.fuse(x)  # (batch, n, d)

    def call(self, inputs, training=False):
        """Teacher-forced pass over whole sequences (training).

        Args:
            inputs: dict with ``token_ids`` int `(batch, length)` and
                ``target_hidden`` `(batch, length, d)`: h_{t-1} for each
                position t (`shift_right` of the target's hidden states).

        Returns:
            `(logits, hidden)`: `(batch, length, vocab)` logits for x_{t+1}
            and `(batch, length, d)` estimates of h_t.
        """
        x = self._inputs(inputs["token_ids"], inputs["target_hidden"], 0)
        hidden = self.feature_norm(self.decoder(x, training=training))  # h^_t
        return self.logits(hidden), hidden  # (batch, n, vocab), (batch, n, d)

    def build_cache(self, batch_size, max_length):
        """An empty KV cache for `call_with_cache`: zeros of shape
        `(batch, 2, max_length + CACHE_MARGIN, num_heads, head_dim)`."""
        shape = [
            batch_size,
            2,
            int(max_length) + CACHE_MARGIN,
            self.num_heads,
            self.head_dim,
        ]
        return ops.zeros(shape, dtype=self.compute_dtype)

    def call_with_cache(self, token_ids, target_hidden, cache, cache_update_index):
        """Cached decoding of `n` positions.

        Args:
            token_ids: int `(batch, n)`, the tokens at positions
                ``cache_update_index .. cache_update_index + n - 1``.
            target_hidden: `(batch, n, d)`, h_{t-1} for each of those tokens
                (the target's, or the head's own estimate where the target's
                is not known yet).
            cache: from `build_cache`.
            cache_update_index: scalar int, the position of ``token_ids[:, 0]``.

        Returns:
            `(logits, hidden, cache)`: `(batch, n, vocab)` logits for the
            next token at each position, `(batch, n, d)` estimates h^_t, and
            the updated cache.
        """
        hidden, cache = self.features_with_cache(
            token_ids, target_hidden, cache, cache_update_index
        )
        return self.logits(hidden), hidden, cache

    def features_with_cache(self, token_ids, target_hidden, cache, cache_update_index):
        """`call_with_cache` without the output projection: `(hidden,
        cache)`, hidden `(batch, n, d)`. Decoding needs logits at one
        position of a window only; `logits` projects just those."""
        x = self._inputs(token_ids, target_hidden, cache_update_index)
        x, cache = self.decoder(
            x,
            self_attention_cache=cache,
            self_attention_cache_update_index=cache_update_index,
        )
        return self.feature_norm(x), cache  # (batch, n, d): h^_t

    def logits(self, hidden):
        """Next-token logits `(batch, n, vocab)` from estimates h^ `(batch,
        n, d)`: the target's own output embedding (and soft cap)."""
        return self.token_embedding(hidden, reverse=True)

    # ---------------------------------------------------------------- weights

    def check_weights(self):
        """Raise ValueError if this head carries no target/trained weights."""
        try:
            has_weights = float(ops.convert_to_numpy(self.has_weights)) == 1.0
        except Exception:  # traced (inside generate's jit): the Python flag
            has_weights = self._weights_set
        self._weights_set = has_weights
        if not has_weights:
            raise ValueError(
                "This DraftHead was built from a config alone and holds random "
                "weights (even its token embedding is not the target's). Load "
                "a trained head with `DraftHead.from_preset(dir)` (or "
                "`load_weights`), or build one with `DraftHead.from_target("
                "target)` and train it with `keras_specdec.head_distill.distill_head`."
            )

    @classmethod
    def from_target(cls, target, *, num_heads=None, intermediate_dim=None, **kwargs):
        """A new (untrained) head for KerasHub causal LM `target`, with the
        target's token embedding / output projection (frozen) and position
        table (if it has one) copied in.

        Raises ValueError for a target without a reversible token embedding
        (Keras / KerasHub ``ReversibleEmbedding``), which the head needs as
        its output head.
        """

        backbone = getattr(target, "backbone", None)
        embedding = getattr(backbone, "token_embedding", None)
        if not hasattr(embedding, "tie_weights") or not hasattr(
            embedding, "embeddings"
        ):
            raise ValueError(
                "DraftHead.from_target needs a KerasHub CausalLM whose backbone "
                "has a `token_embedding` ReversibleEmbedding (its output head); "
                f"got {type(target).__name__}."
            )
        d = int(backbone.hidden_dim)
        target_heads = getattr(backbone, "num_heads", None) or getattr(
            backbone, "num_query_heads", 4
        )
        max_len = getattr(backbone, "max_sequence_length", None) or 2048
        head = cls(
            vocabulary_size=int(backbone.vocabulary_size),
            hidden_dim=d,
            num_heads=num_heads or int(target_heads),
            intermediate_dim=intermediate_dim
            or getattr(backbone, "intermediate_dim", 4 * d),
            max_sequence_length=int(max_len) + CACHE_MARGIN,
            tie_weights=bool(embedding.tie_weights),
            logit_soft_cap=getattr(embedding, "logit_soft_cap", None),
            target_class=type(target).__name__,
            **kwargs,
        )
        head.token_embedding.set_weights(embedding.get_weights())
        table = getattr(backbone, "position_embedding", None)
        if table is not None and hasattr(table, "position_embeddings"):
            rows = ops.convert_to_numpy(table.position_embeddings)
            full = ops.convert_to_numpy(head.position_embedding.position_embeddings)
            n = min(len(rows), len(full))
            full[:n] = rows[:n]
            full[n:] = rows[n - 1]
            head.position_embedding.position_embeddings.assign(full)
        head.has_weights.assign(1.0)
        head._weights_set = True
        return head

    def get_config(self):
        return {
            "name": self.name,
            "vocabulary_size": self.vocabulary_size,
            "hidden_dim": self.hidden_dim,
            "num_heads": self.num_heads,
            "intermediate_dim": self.intermediate_dim,
            "max_sequence_length": self.max_sequence_length,
            "tie_weights": self.tie_weights,
            "logit_soft_cap": self.logit_soft_cap,
            "layer_norm_epsilon": self.layer_norm_epsilon,
            "activation": self.activation,
            "target_class": self.target_class,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def save_to_preset(self, preset_dir, *, float16=True):
        """Write ``config.json`` and ``model.weights.h5`` into `preset_dir`
        (weights stored as float16 unless ``float16=False``; they load into
        float32 variables)."""
        os.makedirs(preset_dir, exist_ok=True)
        with open(os.path.join(preset_dir, CONFIG_FILE), "w") as f:
            json.dump(keras.saving.serialize_keras_object(self), f, indent=1)
        path = os.path.join(preset_dir, WEIGHTS_FILE)
        self.save_weights(path)
        if float16:
            _store_float16(path)

    @classmethod
    def from_preset(cls, preset_dir):
        """Load a head written by `save_to_preset`."""
        config_file = os.path.join(preset_dir, CONFIG_FILE)
        weights_file = os.path.join(preset_dir, WEIGHTS_FILE)
        for file in (config_file, weights_file):
            if not os.path.isfile(file):
                raise ValueError(
                    f"{preset_dir!r} is not a DraftHead preset: {file} is missing "
                    "(write one with `head.save_to_preset(dir)`)."
                )
        with open(config_file) as f:
            head = keras.saving.deserialize_keras_object(json.load(f))
        if not isinstance(head, cls):
            raise ValueError(f"{config_file} describes a {type(head).__name__}.")
        head.load_weights(weights_file)
        head.check_weights()
        return head


def _reversible_embedding_class():
    """Keras' ReversibleEmbedding (what KerasHub 0.32 backbones use), or
    KerasHub's for older Keras."""
    if hasattr(keras.layers, "ReversibleEmbedding"):
        return keras.layers.ReversibleEmbedding
    import keras_hub

    return keras_hub.layers.ReversibleEmbedding


def _store_float16(path):
    """Rewrite a Keras weights file with float32 datasets stored as float16."""
    import h5py
    import numpy as np

    tmp = path + ".tmp.h5"

    def copy(source, dest):
        for key, value in source.attrs.items():
            dest.attrs[key] = value
        for name, item in source.items():
            if isinstance(item, h5py.Group):
                copy(item, dest.create_group(name))
                continue
            data = item[()]
            if isinstance(data, np.ndarray) and data.dtype == np.float32:
                data = data.astype(np.float16)
            dataset = dest.create_dataset(name, data=data)
            for key, value in item.attrs.items():
                dataset.attrs[key] = value

    with h5py.File(path, "r") as source, h5py.File(tmp, "w") as dest:
        copy(source, dest)
    os.replace(tmp, path)


# ---------------------------------------------------------------------------
# The head as a draft of the sampler (keras_specdec.models' interface).


def _adapter_class():
    """`HeadAdapter`, defined once `keras_specdec.models` is importable."""
    from keras_specdec import models

    class HeadAdapter(models.ModelAdapter):
        """A `DraftHead` behind the sampler's model interface.

        State: ``{"cache": (batch, 2, max_length + CACHE_MARGIN, heads,
        head_dim), "hidden": (batch, d)}`` -- the head's own KV cache and its
        latest feature estimate h^ (fed with the next proposal).

        Each round, `first_logits` re-feeds the window of the last verify
        pass: tokens at hidden_start + 1 .. hidden_start + n with the
        target's true features h_{hidden_start} .. (EAGLE: the true features
        replace the head's estimates for every decided position), and reads
        the logits at offset index - 2 - hidden_start, which predict
        `index`; later positions of the window are scratch, rewritten by
        `next_logits` before any query attends to them (causal masking).
        `next_logits` feeds proposal j - 1 with the head's own estimate.
        """

        reads_target = True

        def __init__(self, model):
            model.check_weights()
            super().__init__(model)

        @property
        def vocabulary_size(self):
            return self.model.vocabulary_size

        @property
        def context_length(self):
            return self.model.max_sequence_length - CACHE_MARGIN

        def init_state(self, token_ids, padding_mask, target=None):
            """The head's cache over the prompt, fed with the target's
            prefill features (`target`, a TargetView). Without a target
            (cost measurements: `analysis.measure_step_seconds`) the
            features are zeros; the sampler always passes the prefill."""
            batch, max_length = ops.shape(token_ids)
            cache = self.model.build_cache(batch, max_length)
            if target is None:
                hidden = ops.zeros(
                    (batch, max_length, self.model.hidden_dim),
                    self.model.compute_dtype,
                )
            else:
                hidden = target.hidden
            # Prefill: every buffer position with the target's h_{t-1}
            # (positions past a row's prompt are overwritten before use).
            fed = shift_right(ops.cast(hidden, self.model.compute_dtype))
            hidden, cache = self.model.features_with_cache(
                self.within_vocabulary(token_ids), fed, cache, 0
            )
            return {"cache": cache, "hidden": hidden[:, 0]}

        def decode(self, state, token_ids, index, prompt_mask=None):
            """Tokens at `index ..` fed with the head's own latest feature
            estimate (what draft steps 2..gamma do; the sampler itself calls
            `first_logits` / `next_logits`). Used to time a head step."""
            chunk = ops.shape(token_ids)[1]
            features = ops.repeat(state["hidden"][:, None, :], chunk, axis=1)
            logits, hidden, cache = self.model.call_with_cache(
                self.within_vocabulary(token_ids), features, state["cache"], index
            )
            return logits, hidden, {"cache": cache, "hidden": hidden[:, -1]}

        def _rows(self, state, token_ids, start, features, axes):
            """Per-row `features_with_cache` at row positions `start`
            (batch,): `(hidden, cache)`, hidden `(batch, n, d)`."""
            if ops.shape(token_ids)[0] == 1:
                # One row: its position is the batch's (no vmap, no scatter).
                return self.model.features_with_cache(
                    token_ids, features, state["cache"], ops.cast(start, "int32")[0]
                )
            cache_axes = {"cache": axes["cache"]}

            def fn(row_state, ids, idx, feats):
                hidden, cache = self.model.features_with_cache(
                    ids, feats, row_state["cache"], idx
                )
                # vmap_rows's first output is any per-row array: here h^.
                return hidden, None, {"cache": cache}

            hidden, _, new = models.vmap_rows(
                fn, {"cache": state["cache"]}, cache_axes,
                token_ids, ops.cast(start, "int32"), features,
            )  # fmt: skip
            return hidden, new["cache"]

        def first_logits(self, state, tokens, index, forced, axes, target=None):
            n = ops.shape(target.hidden)[1]
            start = ops.cast(target.hidden_start, "int32") + 1  # (batch,)
            ids = self.within_vocabulary(models.window(tokens, start, n))
            features = ops.cast(target.hidden, self.model.compute_dtype)
            hidden, cache = self._rows(state, ids, start, features, axes)
            at = ops.cast(index, "int32") - 1 - start  # (batch,)
            hidden = models.take_row(hidden, at)  # (batch, d): h^ predicting `index`
            # Only that position's logits are read: project one row, not n.
            logits = self.model.logits(hidden[:, None, :])[:, 0]  # (batch, vocab)
            return logits, {"cache": cache, "hidden": hidden}

        def next_logits(self, state, tokens, position, forced, axes):
            ids = self.within_vocabulary(models.window(tokens, position, 1))
            features = state["hidden"][:, None, :]  # (batch, 1, d): h^_{position-1}
            hidden, cache = self._rows(state, ids, position, features, axes)
            logits = self.model.logits(hidden)[:, 0]  # (batch, vocab)
            return logits, {"cache": cache, "hidden": hidden[:, 0]}

    return HeadAdapter


def _register():
    try:
        from keras_specdec import models
    except ImportError:  # a tree without the model interface
        return None
    adapter = _adapter_class()
    models.register_adapter(DraftHead, adapter)
    return adapter


HeadAdapter = _register()
