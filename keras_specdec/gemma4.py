"""Gemma4's MTP assistants as exact drafts.

KerasHub ships multi-token-prediction assistants for Gemma4
(`keras_hub.models.Gemma4AssistantCausalLM`: the `gemma4_*_assistant`
presets). An assistant has no cache and no token embedding of its own that
it reads: each draft step takes

- the *target's* embedding of the last token, scaled by
  `sqrt(target hidden_dim)` (as the target's own backbone scales it),
- a hidden state of the target's width (`backbone_hidden_size`): the
  target's final hidden state for the first step of a round, its own
  `post_projection` output ("next hidden") for the steps after,
- the target's key/value cache: its layers are all KV-shared, reading the
  last full-attention and the last sliding-window layer of the target that
  computes its own keys and values (`kv_source_layers`),

runs `pre_projection` -> its decoder layers -> final norm, and returns the
logits of the next token (through the centroid head when
`use_ordered_embeddings`, else the tied embedding) and its next hidden state.
The target's final logit soft-cap (`Gemma4CausalLM.final_logit_cap`) is then
applied to the draft's logits, as KerasHub's `generate_step` does.

KerasHub runs it with its own `SpeculativeSampler`
(`target.generate(x, assistant_model=assistant)`), which is not exact (it
proposes the draft's argmax but tests it with the draft's softmax) and moves
the whole batch by its slowest row. Here the assistant is one more draft of
`keras_specdec.SpeculativeSampler`: proposals are drawn from q, the base
sampler's adjustment of the logits returned below, and accepted with
min(1, p / q), so the output is exactly the target's distribution whatever
the assistant computes.

What the assistant sees, per row, at a round whose first undecided position
is `index` (the EAGLE convention: token x_t with the hidden state h_{t-1}
that predicted it):

- proposal 0 from (x_{index-1}, h_{index-2}): h_{index-2} is the target's
  hidden state at index - 2 from the last verify pass (the prefill before the
  first round), zeros when index - 2 < 0;
- proposals j >= 1 from (proposal j - 1, the assistant's next hidden of step
  j - 1);
- every step of the round at one fixed RoPE position, index - 1 (KerasHub's
  `fixed_pos`), attending to the target's keys and values at positions
  <= index - 2: the positions the target has processed with decided tokens
  (h_{index-2} saw exactly those). KerasHub's loop attends up to index - 1,
  where the target's cache still holds the key/value of the proposal that was
  rejected there (or nothing); the assistant's own layers and weights are
  used unchanged (`assistant_step(..., attend_through=position)` reproduces
  KerasHub's call exactly; a test checks it).

`assistant_step` is written for ONE row (a batch of one at its own scalar
position), so `jax.vmap` over rows gives every row of a ragged batch its own
position; `assistant_rows` is that vmap.

Example:

```python
target = keras_hub.models.Gemma4CausalLM.from_preset("gemma4_instruct_2b")
assistant = keras_hub.models.Gemma4AssistantCausalLM.from_preset(
    "gemma4_instruct_2b_assistant"
)
target.compile(
    sampler=keras_specdec.SpeculativeSampler(
        draft=assistant,
        num_speculative_tokens=4,
        base_sampler=keras_hub.samplers.TopPSampler(p=0.95),
    )
)
target.generate("What is the capital of France?", max_length=64)
```
"""

import jax
import keras_hub
from keras import ops

from keras_specdec import models


def is_assistant(model):
    """Whether `model` is a KerasHub Gemma4 MTP assistant."""
    return isinstance(model, keras_hub.models.Gemma4AssistantCausalLM)


def kv_source_layers(target):
    """The target layers whose keys/values the assistant reads.

    KerasHub's rule (`Gemma4CausalLM.generate_step`): the last layer of each
    attention type that computes its own keys and values (KV-shared target
    layers never write their cache slot); without such a layer, the last
    (full) and the second-to-last (sliding) layer.

    Args:
        target: a `keras_hub.models.Gemma4CausalLM`.

    Returns:
        `(full, local)`: Python ints, indices into the target's layer axis
        of its cache.
    """
    layers = target.backbone.transformer_layers
    layer_types = target.backbone.layer_types or []
    full = local = None
    for i, layer in enumerate(layers):
        if getattr(layer, "is_kv_shared_layer", False):
            continue
        kind = layer_types[i] if i < len(layer_types) else None
        if kind == "full_attention":
            full = i
        else:
            local = i
    num_layers = len(layers)
    full = num_layers - 1 if full is None else full
    local = num_layers - 2 if local is None else local
    return full, local


def check_pair(target, assistant):
    """Raise a `ValueError` naming the problem if `assistant` cannot draft for
    `target` (checked before anything compiles).

    Args:
        target: the model `generate()` runs.
        assistant: a `keras_hub.models.Gemma4AssistantCausalLM`.
    """
    name = type(target).__name__
    if not isinstance(target, keras_hub.models.Gemma4CausalLM):
        raise ValueError(
            "A Gemma4 assistant (`Gemma4AssistantCausalLM`) drafts for a "
            f"`Gemma4CausalLM` target: it reads that target's embeddings, "
            f"hidden states and key/value cache. The target is `{name}`. Use "
            "the assistant preset made for your target (e.g. "
            "`gemma4_instruct_2b_assistant` for `gemma4_instruct_2b`), or a "
            "draft model of the target's family."
        )
    target_hidden = int(target.backbone.hidden_dim)
    if int(assistant.backbone_hidden_size) != target_hidden:
        raise ValueError(
            f"The assistant was built for a target of hidden size "
            f"{assistant.backbone_hidden_size} (`backbone_hidden_size`), but "
            f"the target's `hidden_dim` is {target_hidden}. Use the assistant "
            "preset made for this target."
        )
    target_vocab = int(target.backbone.vocabulary_size)
    draft_vocab = int(assistant.backbone.vocabulary_size)
    if target_vocab != draft_vocab:
        raise ValueError(
            f"The assistant's vocabulary_size is {draft_vocab} but the "
            f"target's is {target_vocab}. Use the assistant preset made for "
            "this target."
        )
    target_head_dim = int(target.backbone.head_dim)
    if int(assistant.backbone.head_dim) > target_head_dim:
        raise ValueError(
            f"The assistant's attention heads ({assistant.backbone.head_dim} "
            "dimensions) read the target's keys and values, which have "
            f"{target_head_dim}. Use the assistant preset made for this "
            "target."
        )


def shared_kv(target_cache, kv_sources):
    """The two target cache layers the assistant reads.

    Args:
        target_cache: `(batch, num_layers, 2, max_length, heads, head_dim)`,
            the target's KerasHub cache.
        kv_sources: `(full, local)` from `kv_source_layers`.

    Returns:
        `(batch, 2, 2, max_length, heads, head_dim)`: [:, 0] the full-attention
        source layer, [:, 1] the sliding-window one.
    """
    full, local = kv_sources
    return ops.stack([target_cache[:, full], target_cache[:, local]], axis=1)


def soft_cap(logits, cap):
    """`cap * tanh(logits / cap)` (KerasHub's final logit soft-cap); `cap`
    None leaves the logits as they are."""
    if cap is None:
        return logits
    cap = ops.cast(cap, logits.dtype)
    return ops.tanh(logits / cap) * cap


def scaled_embedding(target, token_ids):
    """The target's input embedding of `token_ids` `(batch, n)`, scaled by
    sqrt(hidden_dim) as its backbone scales it: `(batch, n, hidden_dim)`."""
    embedding = target.backbone.token_embedding(token_ids)
    scale = ops.sqrt(ops.cast(target.backbone.hidden_dim, "float32"))
    return embedding * ops.cast(scale, embedding.dtype)


def assistant_step(
    assistant, target, token_id, hidden, kv, position, attend_through=None
):
    """One assistant step for ONE row, at that row's own position.

    Args:
        assistant: a `keras_hub.models.Gemma4AssistantCausalLM`.
        target: its `keras_hub.models.Gemma4CausalLM` (its embedding table and
            final logit soft-cap are used).
        token_id: int `(1,)`, the token fed at this step.
        hidden: `(1, target_hidden_dim)`, the target's hidden state (first
            step of a round) or the assistant's previous next hidden.
        kv: `(1, 2, 2, max_length, heads, head_dim)` from `shared_kv`.
        position: int32 `()`, the RoPE position of the step (the round's
            index - 1, fixed for all its steps).
        attend_through: int32 `()`, the last cache position attended to
            (default `position - 1`: the positions the target has processed
            with decided tokens; may be -1: nothing to attend to).
            `attend_through=position` is KerasHub's own call.

    Returns:
        `(logits, next_hidden)`: float32 `(1, vocab)` with the target's
        final soft-cap applied, and `(1, target_hidden_dim)`.
    """
    dtype = assistant.compute_dtype
    position = ops.cast(position, "int32")
    if attend_through is None:
        attend_through = position - 1
    attend_through = ops.cast(attend_through, "int32")
    embedding = scaled_embedding(target, ops.reshape(token_id, (1, 1)))
    inputs = ops.concatenate(
        [ops.cast(embedding, dtype), ops.cast(hidden, dtype)[:, None, :]], axis=-1
    )  # (1, 1, 2 * target_hidden_dim)
    x = assistant.pre_projection(inputs)  # (1, 1, assistant_hidden_dim)
    kv = ops.cast(kv, dtype)
    full_kv, local_kv = kv[:, 0], kv[:, 1]  # (1, 2, max_length, heads, head_dim)
    positions = ops.reshape(position, (1,))
    layer_types = assistant.backbone.layer_types or []
    for i, layer in enumerate(assistant.backbone.transformer_layers):
        kind = layer_types[i] if i < len(layer_types) else None
        layer_kv = full_kv if kind == "full_attention" else local_kv
        # `cache` sizes the attention mask (keys <= attend_through, in the
        # sliding window for local layers); `shared_kv` is what is read;
        # `positions` places the query's RoPE.
        x, _ = layer(
            x,
            cache=layer_kv,
            cache_update_index=attend_through,
            shared_kv=layer_kv,
            positions=positions,
        )
    x = assistant.backbone.layer_norm(x)  # (1, 1, assistant_hidden_dim)
    if assistant.use_ordered_embeddings:
        logits = assistant._apply_centroid_logits(x)
    else:
        logits = assistant.backbone.token_embedding(x, reverse=True)
    next_hidden = assistant.post_projection(x)  # (1, 1, target_hidden_dim)
    logits = soft_cap(ops.cast(logits[:, 0], "float32"), target.final_logit_cap)
    return logits, next_hidden[:, 0]


def assistant_rows(
    assistant, target, token_ids, hidden, kv, position, attend_through=None
):
    """`assistant_step` for every row at its own position (`jax.vmap`).

    Args:
        token_ids: int `(batch,)`.
        hidden: `(batch, target_hidden_dim)`.
        kv: `(batch, 2, 2, max_length, heads, head_dim)` (`shared_kv`).
        position: int32 `(batch,)`.
        attend_through: optional int32 `(batch,)` (default `position - 1`).

    Returns:
        `(logits, next_hidden)`: float32 `(batch, vocab)`,
        `(batch, target_hidden_dim)`.
    """
    position = ops.cast(position, "int32")
    if attend_through is None:
        attend_through = position - 1

    def one_row(token_id, hidden, kv, position, attend_through):
        logits, next_hidden = assistant_step(
            assistant,
            target,
            token_id[None],
            hidden[None],
            kv[None],
            position,
            attend_through,
        )
        return logits[0], next_hidden[0]

    return jax.vmap(one_row)(
        token_ids, hidden, kv, position, ops.cast(attend_through, "int32")
    )


class Gemma4AssistantAdapter(models.ModelAdapter):
    """A `Gemma4AssistantCausalLM` behind the sampler's model interface.

    It reads the target (`reads_target`): the sampler binds it to its
    `Gemma4CausalLM` target (`for_target`, when `generate()` traces, before
    anything compiles) and hands `first_logits` a `models.TargetView`.

    Its state, per row (batch axis 0 everywhere):

    - `kv` `(batch, 2, 2, max_length, heads, head_dim)`: the target's two
      source cache layers (`shared_kv`) as of the round's start;
    - `hidden` `(batch, target_hidden_dim)`: the assistant's last next hidden;
    - `position` int32 `(batch,)`: the round's fixed RoPE position,
      index - 1.

    Args:
        model: a `keras_hub.models.Gemma4AssistantCausalLM`.
        target: its `keras_hub.models.Gemma4CausalLM` (None until bound).

    Example:

    ```python
    adapter = keras_specdec.models.adapt(assistant).for_target(target)
    ```
    """

    reads_target = True

    def __init__(self, model, target=None):
        super().__init__(model)
        self.target = target
        self.kv_sources = None if target is None else kv_source_layers(target)

    def for_target(self, target):
        """This adapter bound to `target` (checked: `check_pair`)."""
        check_pair(target, self.model)
        return Gemma4AssistantAdapter(self.model, target)

    def _bound(self):
        if self.target is None:
            raise ValueError(
                "A Gemma4 assistant drafts for a `Gemma4CausalLM` target: use "
                "it as `keras_specdec.SpeculativeSampler(draft=assistant)` "
                "compiled into the target (`target.compile(sampler=...)`), or "
                "bind it with `adapter.for_target(target)`."
            )
        return self.target

    def init_state(self, token_ids, padding_mask, target=None):
        if target is None:
            raise ValueError(
                "A Gemma4 assistant's state is built from the target's "
                "(a `models.TargetView`), which was not given."
            )
        self._bound()
        cache = target.state
        if len(getattr(cache, "shape", ())) != 6:
            raise ValueError(
                "A Gemma4 assistant reads a `Gemma4CausalLM` cache: one array "
                "(batch, layers, 2, max_length, heads, head_dim); the target's "
                f"state is {jax.tree.map(ops.shape, cache)}."
            )
        batch = ops.shape(token_ids)[0]
        kv = shared_kv(cache, self.kv_sources)
        hidden = ops.zeros(
            (batch, ops.shape(target.hidden)[-1]), dtype=target.hidden.dtype
        )
        return (kv, hidden, ops.zeros((batch,), "int32"))

    def decode(self, state, token_ids, index, prompt_mask=None):
        raise NotImplementedError(
            "A Gemma4 assistant has no decoding pass of its own: it drafts "
            "from the target's hidden states and cache (`first_logits`, "
            "`next_logits`)."
        )

    def first_logits(self, state, tokens, index, forced, axes, target=None):
        """Proposal 0 from (x_{index-1}, h_{index-2}) and the target's cache,
        at the fixed position index - 1, attending to positions <= index - 2.

        Args:
            tokens: int `(batch, length)`; index: int32 `(batch,)` (>= 1).
            target: the `models.TargetView` of this round: hidden states from
                `hidden_start`, the target's cache after its last pass.

        Returns:
            `(logits, state)`, logits float32 `(batch, vocab)`.
        """
        index = ops.cast(index, "int32")
        kv = shared_kv(target.state, self.kv_sources)  # (batch, 2, 2, T, h, d)
        last_token = models.take_row(tokens, index - 1)  # (batch,)
        # h_{index-2}: offset index - 2 - hidden_start in the view; zeros for
        # positions before the sequence (1-token prompts, empty prompts).
        n = ops.shape(target.hidden)[1]
        offset = index - 2 - ops.cast(target.hidden_start, "int32")  # (batch,)
        hidden = models.take_row(target.hidden, ops.clip(offset, 0, n - 1))
        known = ops.logical_and(
            index - 2 >= 0, ops.logical_and(offset >= 0, offset < n)
        )
        hidden = ops.where(known[:, None], hidden, ops.zeros_like(hidden))
        position = index - 1
        logits, next_hidden = assistant_rows(
            self.model, self._bound(), last_token, hidden, kv, position
        )
        return logits, (kv, ops.cast(next_hidden, hidden.dtype), position)

    def next_logits(self, state, tokens, position, forced, axes):
        """Proposal j from proposal j - 1 (the token at `position`) and the
        assistant's own next hidden, at the round's fixed position.

        Returns:
            `(logits, state)`, logits float32 `(batch, vocab)`.
        """
        kv, hidden, anchor = state
        token = models.take_row(tokens, ops.cast(position, "int32"))  # (batch,)
        logits, next_hidden = assistant_rows(
            self.model, self._bound(), token, hidden, kv, anchor
        )
        return logits, (kv, ops.cast(next_hidden, hidden.dtype), anchor)


models.register_adapter(
    keras_hub.models.Gemma4AssistantCausalLM, Gemma4AssistantAdapter
)
