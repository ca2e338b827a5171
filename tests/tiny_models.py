"""Tiny randomly initialised KerasHub causal LMs of every attention family.

`tiny_causal_lm(family, size, seed)` builds a target (`size="target"`) or a
smaller draft (`size="draft"`) with a shared vocabulary of `VOCAB` tokens.
"""

import keras
import keras_hub
import numpy as np

VOCAB = 48
MAX_LEN = 64


def _dims(size):
    # (layers, hidden, heads, kv_heads, intermediate)
    return (2, 32, 4, 2, 64) if size == "target" else (1, 16, 2, 1, 32)


def _llama_like(backbone_cls, task_cls, **extra):
    def build(size):
        layers, hidden, heads, kv, inter = _dims(size)
        backbone = backbone_cls(
            vocabulary_size=VOCAB,
            num_layers=layers,
            num_query_heads=heads,
            num_key_value_heads=kv,
            hidden_dim=hidden,
            intermediate_dim=inter,
            **extra,
        )
        return task_cls(backbone=backbone, preprocessor=None)

    return build


def _gpt_like(backbone_cls, task_cls, heads_arg="num_heads", **extra):
    def build(size):
        layers, hidden, heads, _, inter = _dims(size)
        backbone = backbone_cls(
            vocabulary_size=VOCAB,
            num_layers=layers,
            hidden_dim=hidden,
            intermediate_dim=inter,
            **{heads_arg: heads},
            **extra,
        )
        return task_cls(backbone=backbone, preprocessor=None)

    return build


def _gemma(version):
    def build(size):
        layers, hidden, heads, kv, inter = _dims(size)
        common = dict(
            vocabulary_size=VOCAB,
            num_layers=layers,
            num_query_heads=heads,
            num_key_value_heads=kv,
            hidden_dim=hidden,
            intermediate_dim=inter,
            head_dim=hidden // heads,
        )
        m = keras_hub.models
        if version == 1:
            return m.GemmaCausalLM(
                backbone=m.GemmaBackbone(**common), preprocessor=None
            )
        if version == 2:
            backbone = m.GemmaBackbone(
                **common,
                query_head_dim_normalize=False,
                use_post_ffw_norm=True,
                use_post_attention_norm=True,
                final_logit_soft_cap=30.0,
                attention_logit_soft_cap=50.0,
                use_sliding_window_attention=True,
                sliding_window_size=16,
            )
            return m.GemmaCausalLM(backbone=backbone, preprocessor=None)
        if version == 3:
            backbone = m.Gemma3Backbone(
                **common, image_size=16, vision_encoder=None, sliding_window_size=16
            )
            return m.Gemma3CausalLM(backbone=backbone, preprocessor=None)
        backbone = m.Gemma4Backbone(**common, image_size=16, vision_encoder=None)
        return m.Gemma4CausalLM(backbone=backbone, preprocessor=None)

    return build


def _moe(backbone_cls, task_cls, **extra):
    def build(size):
        layers, hidden, heads, kv, inter = _dims(size)
        backbone = backbone_cls(
            vocabulary_size=VOCAB,
            num_layers=layers,
            num_query_heads=heads,
            num_key_value_heads=kv,
            hidden_dim=hidden,
            intermediate_dim=inter,
            num_experts=4,
            **extra,
        )
        return task_cls(backbone=backbone, preprocessor=None)

    return build


def _smollm3(size):
    layers, hidden, heads, kv, inter = _dims(size)
    backbone = keras_hub.models.SmolLM3Backbone(
        vocabulary_size=VOCAB,
        hidden_dim=hidden,
        intermediate_dim=inter,
        num_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv,
        attention_bias=False,
        attention_dropout=0.0,
        rope_layer_enabled_list=[True] * layers,
        layer_types=["attention"] * layers,
        mlp_bias=False,
        layer_norm_epsilon=1e-6,
        max_position_embeddings=MAX_LEN,
        rope_theta=10000.0,
        partial_rotary_factor=1.0,
    )
    return keras_hub.models.SmolLM3CausalLM(backbone=backbone, preprocessor=None)


def _qwen3(size):
    layers, hidden, heads, kv, inter = _dims(size)
    backbone = keras_hub.models.Qwen3Backbone(
        vocabulary_size=VOCAB,
        num_layers=layers,
        num_query_heads=heads,
        num_key_value_heads=kv,
        head_dim=hidden // heads,
        hidden_dim=hidden,
        intermediate_dim=inter,
    )
    return keras_hub.models.Qwen3CausalLM(backbone=backbone, preprocessor=None)


def _qwen3_moe(size):
    layers, hidden, heads, kv, inter = _dims(size)
    backbone = keras_hub.models.Qwen3MoeBackbone(
        vocabulary_size=VOCAB,
        num_layers=layers,
        num_query_heads=heads,
        num_key_value_heads=kv,
        head_dim=hidden // heads,
        hidden_dim=hidden,
        intermediate_dim=inter,
        moe_intermediate_dim=inter // 2,
        num_experts=4,
        top_k=2,
    )
    return keras_hub.models.Qwen3MoeCausalLM(backbone=backbone, preprocessor=None)


def _qwen_moe(size):
    layers, hidden, heads, kv, inter = _dims(size)
    backbone = keras_hub.models.QwenMoeBackbone(
        vocabulary_size=VOCAB,
        num_layers=layers,
        num_query_heads=heads,
        num_key_value_heads=kv,
        hidden_dim=hidden,
        intermediate_dim=inter,
        moe_intermediate_dim=inter // 2,
        shared_expert_intermediate_dim=inter,
        num_experts=4,
        top_k=2,
    )
    return keras_hub.models.QwenMoeCausalLM(backbone=backbone, preprocessor=None)


m = keras_hub.models
BUILDERS = {
    "gpt2": _gpt_like(m.GPT2Backbone, m.GPT2CausalLM, max_sequence_length=MAX_LEN),
    "gemma": _gemma(1),
    "gemma2": _gemma(2),
    "gemma3": _gemma(3),
    "gemma4": _gemma(4),
    "llama": _llama_like(m.LlamaBackbone, m.LlamaCausalLM),
    "llama3": _llama_like(m.Llama3Backbone, m.Llama3CausalLM),
    "mistral": _llama_like(m.MistralBackbone, m.MistralCausalLM),
    "mixtral": _moe(m.MixtralBackbone, m.MixtralCausalLM),
    "qwen": _llama_like(m.QwenBackbone, m.QwenCausalLM),
    "qwen3": _qwen3,
    "qwen_moe": _qwen_moe,
    "qwen3_moe": _qwen3_moe,
    "phi3": _gpt_like(
        m.Phi3Backbone,
        m.Phi3CausalLM,
        heads_arg="num_query_heads",
        num_key_value_heads=2,
    ),
    "opt": _gpt_like(m.OPTBackbone, m.OPTCausalLM, max_sequence_length=MAX_LEN),
    "bloom": _gpt_like(m.BloomBackbone, m.BloomCausalLM),
    "falcon": _gpt_like(
        m.FalconBackbone, m.FalconCausalLM, heads_arg="num_attention_heads"
    ),
    "gpt_neox": _gpt_like(
        m.GPTNeoXBackbone, m.GPTNeoXCausalLM, max_sequence_length=MAX_LEN
    ),
    "smollm3": _smollm3,
    "gpt_oss": _moe(m.GptOssBackbone, m.GptOssCausalLM),
}
del m


def tiny_causal_lm(family, size="target", seed=0):
    """A tiny `family` causal LM; `size` is "target" or "draft" (smaller)."""
    keras.utils.set_random_seed(seed)
    return BUILDERS[family](size)


def noisy_copy(model, noise, seed=0):
    """A draft with the target's architecture and weights plus Gaussian noise
    of `noise` times each weight tensor's standard deviation: it agrees with
    the target often but not always, so both acceptance and rejection paths
    run (a random small draft of these tiny models almost never agrees)."""
    rng = np.random.default_rng(seed)
    copy = model.__class__.from_config(model.get_config())
    weights = []
    for w in model.get_weights():
        scale = noise * (w.std() if w.size > 1 else 0.0)
        weights.append(w + scale * rng.standard_normal(w.shape).astype(w.dtype))
    copy.set_weights(weights)
    return copy


def generate_inputs(family, token_ids, padding_mask):
    """`generate()` inputs without a preprocessor for `family`."""
    inputs = {"token_ids": token_ids, "padding_mask": padding_mask}
    if family == "gemma3":
        # Gemma3's generate() returns an `images` key that must not be None.
        inputs["images"] = np.zeros((len(token_ids), 0, 16, 16, 3), "float32")
    return inputs


# ---- encoder-decoders ----
def _t5(size):
    layers, hidden, heads, _, inter = _dims(size)
    backbone = keras_hub.models.T5Backbone(
        vocabulary_size=VOCAB,
        num_layers=layers,
        num_heads=heads,
        hidden_dim=hidden,
        intermediate_dim=inter,
        dropout=0.0,
    )
    return keras_hub.models.T5Seq2SeqLM(backbone=backbone, preprocessor=None)


def _bart(size):
    layers, hidden, heads, _, inter = _dims(size)
    backbone = keras_hub.models.BartBackbone(
        vocabulary_size=VOCAB,
        num_layers=layers,
        num_heads=heads,
        hidden_dim=hidden,
        intermediate_dim=inter,
        dropout=0.0,
        max_sequence_length=MAX_LEN,
    )
    return keras_hub.models.BartSeq2SeqLM(backbone=backbone, preprocessor=None)


def _t5gemma(size):
    layers, hidden, heads, kv, inter = _dims(size)
    side = dict(
        hidden_dim=hidden,
        intermediate_dim=inter,
        num_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv,
        head_dim=hidden // heads,
        layer_types=["full_attention"] * layers,
    )
    backbone = keras_hub.models.T5GemmaBackbone(
        vocabulary_size=VOCAB,
        **{f"encoder_{k}": v for k, v in side.items()},
        **{f"decoder_{k}": v for k, v in side.items()},
        initializer_range=0.2,
    )
    return keras_hub.models.T5GemmaSeq2SeqLM(backbone=backbone, preprocessor=None)


SEQ2SEQ_BUILDERS = {"t5": _t5, "bart": _bart, "t5gemma": _t5gemma}


def tiny_seq2seq_lm(family, size="target", seed=0):
    """A tiny encoder-decoder of `family` ("t5", "bart", "t5gemma")."""
    keras.utils.set_random_seed(seed)
    return SEQ2SEQ_BUILDERS[family](size)


def seq2seq_inputs(encoder_prompts, decoder_prompts, encoder_length, max_length):
    """Right-padded token-id inputs for a Seq2SeqLM without preprocessor."""

    def pad(prompts, length):
        ids = np.zeros((len(prompts), length), "int32")
        mask = np.zeros((len(prompts), length), bool)
        for row, prompt in enumerate(prompts):
            ids[row, : len(prompt)] = prompt
            mask[row, : len(prompt)] = True
        return ids, mask

    encoder_ids, encoder_mask = pad(encoder_prompts, encoder_length)
    decoder_ids, decoder_mask = pad(decoder_prompts, max_length)
    return {
        "encoder_token_ids": encoder_ids,
        "encoder_padding_mask": encoder_mask,
        "decoder_token_ids": decoder_ids,
        "decoder_padding_mask": decoder_mask,
    }
