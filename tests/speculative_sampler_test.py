"""Behaviour of `SpeculativeSampler` on tiny KerasHub models (JAX, CPU)."""

import math
import threading

import helpers
import keras
import keras_hub
import numpy as np
import pytest
from tiny_models import BUILDERS, generate_inputs, noisy_copy, tiny_causal_lm

import keras_specdec

# GPT-NeoX's cached decoding applies RoPE without the cache offset (upstream
# keras-hub 0.32 bug): a multi-token verify chunk and single-token steps see
# different positions, so no chunked verifier can match its greedy output.
KNOWN_UPSTREAM_BUGS = {"gpt_neox"}


def ragged_batch(max_length):
    return helpers.ragged_batch([[1, 2, 3], [4, 5, 6, 7, 8, 9], [10, 11]], max_length)


def single_row(max_length):
    token_ids, padding_mask = ragged_batch(max_length)
    return token_ids[:1], padding_mask[:1]


generate = helpers.generate


# (batch, gamma, draft) cases of the greedy-identity test. "noisy" is a noisy
# copy of the target (accepts often), "small" a small random draft (rarely
# agrees: the reject/recover path). The full matrix (both batches x gammas
# 1/3/5 with the noisy copy, plus the small draft at gamma 3) compiles 8
# speculative programs per family and runs with -m slow; CI runs a cover of
# every value on each axis (both batch shapes, gammas 1/3/5, both drafts) in 3.
GREEDY_CASES_CI = [
    ("single", 1, "noisy"),
    ("ragged", 3, "small"),
    ("ragged", 5, "noisy"),
]
GREEDY_CASES_ALL = [
    (batch, gamma, draft)
    for batch in ("single", "ragged")
    for gamma, draft in ((1, "noisy"), (3, "noisy"), (3, "small"), (5, "noisy"))
]


def check_greedy_identity(family, cases):
    if family in KNOWN_UPSTREAM_BUGS:
        pytest.xfail("upstream cached-RoPE offset bug, see KNOWN_UPSTREAM_BUGS")
    target = tiny_causal_lm(family, "target", seed=1)
    drafts = {
        "noisy": noisy_copy(target, noise=0.5, seed=2),
        "small": tiny_causal_lm(family, "draft", seed=3),
    }
    batches = {"single": single_row(20), "ragged": ragged_batch(20)}
    expected = {}
    accepted = 0
    for batch, gamma, draft in cases:
        if batch not in expected:
            expected[batch] = generate(target, "greedy", *batches[batch], family=family)
        sampler = keras_specdec.SpeculativeSampler(
            draft=drafts[draft], num_speculative_tokens=gamma
        )
        out = generate(target, sampler, *batches[batch], family=family)
        np.testing.assert_array_equal(
            out["token_ids"],
            expected[batch]["token_ids"],
            err_msg=str((batch, gamma, draft)),
        )
        accepted += sampler.stats()["accepted_tokens"]
    # Both code paths ran: some draft tokens were accepted somewhere.
    assert accepted > 0


@pytest.mark.parametrize("family", sorted(BUILDERS))
def test_greedy_identical_to_target_greedy(family):
    check_greedy_identity(family, GREEDY_CASES_CI)


@pytest.mark.slow
@pytest.mark.parametrize("family", sorted(BUILDERS))
def test_greedy_identical_to_target_greedy_all_cases(family):
    check_greedy_identity(family, GREEDY_CASES_ALL)


@pytest.mark.xfail(strict=True, reason="GPT-NeoX cached RoPE offset (upstream)")
def test_gpt_neox_greedy_mismatch_is_the_upstream_bug():
    target = tiny_causal_lm("gpt_neox", "target", seed=1)
    draft = noisy_copy(target, noise=0.5, seed=2)
    batch = ragged_batch(20)
    expected = generate(target, "greedy", *batch)
    out = generate(target, keras_specdec.SpeculativeSampler(draft, 3), *batch)
    np.testing.assert_array_equal(out["token_ids"], expected["token_ids"])


def test_gpt_neox_runs_and_keeps_prompts():
    target = tiny_causal_lm("gpt_neox", "target", seed=1)
    token_ids, padding_mask = ragged_batch(20)
    sampler = keras_specdec.SpeculativeSampler(target, 3)
    out = generate(target, sampler, token_ids, padding_mask)
    np.testing.assert_array_equal(
        out["token_ids"][padding_mask], token_ids[padding_mask]
    )
    assert sampler.stats()["emitted_tokens"] == int((~padding_mask).sum())


@pytest.mark.parametrize("base_sampler", ["greedy", "random"])
@pytest.mark.parametrize("gamma", [1, 4])
def test_identical_draft_accepts_everything_with_fewest_target_calls(
    base_sampler, gamma
):
    target = tiny_causal_lm("gpt2", "target", seed=1)
    draft = noisy_copy(target, noise=0.0)
    token_ids, padding_mask = single_row(24)
    sampler = keras_specdec.SpeculativeSampler(
        draft, gamma, base_sampler=base_sampler, seed=7
    )
    generate(target, sampler, token_ids, padding_mask)
    stats = sampler.stats()
    new_tokens = 24 - int(padding_mask.sum())
    assert stats["acceptance_rate"] == 1.0
    assert stats["emitted_tokens"] == new_tokens
    assert stats["target_calls"] == math.ceil(new_tokens / (gamma + 1))


def test_disagreeing_draft_still_exact_in_greedy():
    target = tiny_causal_lm("llama", "target", seed=1)
    draft = tiny_causal_lm("llama", "draft", seed=3)  # random: rarely agrees
    batch = ragged_batch(24)
    expected = generate(target, "greedy", *batch)
    sampler = keras_specdec.SpeculativeSampler(draft, 4)
    out = generate(target, sampler, *batch)
    np.testing.assert_array_equal(out["token_ids"], expected["token_ids"])
    assert sampler.stats()["acceptance_rate"] < 0.1


@pytest.mark.parametrize("max_length", [6, 7, 9, 12])
@pytest.mark.parametrize("gamma", [3, 7])
def test_max_length_tail_clamps_verify_window(max_length, gamma):
    # Windows that would run past max_length start earlier instead; a window
    # clamped by XLA would corrupt earlier cache slots and change the output.
    target = tiny_causal_lm("gpt2", "target", seed=1)
    draft = noisy_copy(target, noise=0.3, seed=2)
    batch = ragged_batch(max_length)
    expected = generate(target, "greedy", *batch)
    out = generate(target, keras_specdec.SpeculativeSampler(draft, gamma), *batch)
    np.testing.assert_array_equal(out["token_ids"], expected["token_ids"])


def test_stop_tokens_match_greedy_sampler():
    target = tiny_causal_lm("gpt2", "target", seed=1)
    draft = noisy_copy(target, noise=0.5, seed=2)
    batch = ragged_batch(32)
    plain = generate(target, "greedy", *batch)
    # Stop on a token each row generates, at different positions per row.
    generated = plain["token_ids"][~batch[1]]
    stop = int(np.bincount(generated).argmax())
    expected = generate(target, "greedy", *batch, stop_token_ids=(stop,))
    assert not expected["padding_mask"].all()  # the stop token did cut rows
    sampler = keras_specdec.SpeculativeSampler(draft, 3)
    out = generate(target, sampler, *batch, stop_token_ids=(stop,))
    np.testing.assert_array_equal(out["padding_mask"], expected["padding_mask"])
    np.testing.assert_array_equal(out["token_ids"], expected["token_ids"])


def test_second_generate_does_not_retrace_and_draft_weights_are_arguments():
    target = tiny_causal_lm("gpt2", "target", seed=1)
    draft = noisy_copy(target, noise=1.0, seed=2)
    sampler = keras_specdec.SpeculativeSampler(draft, 3)
    target.compile(sampler=sampler)
    token_ids, padding_mask = ragged_batch(20)
    target.generate(
        generate_inputs("gpt2", token_ids, padding_mask), stop_token_ids=None
    )
    assert sampler.trace_count == 1
    first = sampler.stats()
    assert first["acceptance_rate"] < 1.0
    # New prompt values, same shapes: no retrace. New draft weights reach the
    # compiled program too, so they are arguments, not baked-in constants.
    draft.set_weights(target.get_weights())
    sampler.reset_stats()
    target.generate(
        generate_inputs("gpt2", token_ids + 1, padding_mask), stop_token_ids=None
    )
    assert sampler.trace_count == 1
    assert sampler.stats()["acceptance_rate"] == 1.0
    draft_ids = {id(v) for v in draft.weights}
    assert draft_ids <= {id(v) for v in sampler.variables}


def test_serialization_round_trip(tmp_path):
    draft = tiny_causal_lm("gpt2", "draft", seed=3)
    base = keras_hub.samplers.TopPSampler(p=0.9, temperature=0.7, seed=3)
    sampler = keras_specdec.SpeculativeSampler(draft, 5, base_sampler=base, seed=11)
    config = keras_hub.samplers.serialize(sampler)
    assert config["registered_name"] == "keras_specdec>SpeculativeSampler"
    # A model draft's config holds no weights: the round trip takes the model
    # itself (tests/sampler_config_test.py: a bare config is refused).
    restored = keras_hub.samplers.get(
        {
            "class_name": "keras_specdec>SpeculativeSampler",
            "config": {**sampler.get_config(), "draft": draft},
        }
    )
    assert isinstance(restored, keras_specdec.SpeculativeSampler)

    def without_draft(config):
        return {k: v for k, v in config.items() if k != "draft"}

    assert without_draft(restored.get_config()) == without_draft(sampler.get_config())
    assert restored.num_speculative_tokens == 5
    assert isinstance(restored.base_sampler, keras_hub.samplers.TopPSampler)
    assert restored.base_sampler.p == 0.9
    assert restored.base_sampler.temperature == 0.7
    assert restored.draft is draft

    # A draft given as a preset path round-trips by that path.
    draft.save_to_preset(str(tmp_path / "draft"))
    by_name = keras_specdec.SpeculativeSampler(str(tmp_path / "draft"), 2)
    assert by_name.get_config()["draft"] == str(tmp_path / "draft")
    again = keras_specdec.SpeculativeSampler.from_config(by_name.get_config())
    for a, b in zip(again.draft.get_weights(), draft.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_errors_are_clear_and_early(monkeypatch):
    target = tiny_causal_lm("gpt2", "target", seed=1)
    draft = tiny_causal_lm("gpt2", "draft", seed=3)
    with pytest.raises(ValueError, match="num_speculative_tokens"):
        keras_specdec.SpeculativeSampler(draft, 0)
    with pytest.raises(ValueError, match="num_speculative_tokens"):
        keras_specdec.SpeculativeSampler(draft, 2.0)
    for bad in ("beam", "contrastive"):
        with pytest.raises(ValueError, match="base_sampler"):
            keras_specdec.SpeculativeSampler(draft, 2, base_sampler=bad)
    with pytest.raises(ValueError, match="CausalLM"):
        keras_specdec.SpeculativeSampler(keras.Sequential([]), 2)
    with pytest.raises(ValueError, match="temperature"):
        keras_specdec.SpeculativeSampler(draft, 2, temperature=0.5)

    # Vocabulary mismatch is reported by generate(), at trace time.
    keras.utils.set_random_seed(0)
    other_vocab = keras_hub.models.GPT2CausalLM(
        backbone=keras_hub.models.GPT2Backbone(
            vocabulary_size=50,
            num_layers=1,
            num_heads=2,
            hidden_dim=16,
            intermediate_dim=32,
            max_sequence_length=64,
        ),
        preprocessor=None,
    )
    sampler = keras_specdec.SpeculativeSampler(other_vocab, 2)
    with pytest.raises(ValueError, match="vocabulary"):
        generate(target, sampler, *ragged_batch(12))
    assert sampler.trace_count == 0

    monkeypatch.setattr(keras.config, "backend", lambda: "tensorflow")
    with pytest.raises(ValueError, match="JAX"):
        keras_specdec.SpeculativeSampler(draft, 2)


def test_recurrent_models_are_refused():
    keras.utils.set_random_seed(0)
    rwkv = keras_hub.models.RWKV7CausalLM(
        backbone=keras_hub.models.RWKV7Backbone(
            hidden_size=32,
            head_size=16,
            num_layers=1,
            vocabulary_size=48,
            intermediate_dim=64,
            gate_lora=8,
            mv_lora=8,
            aaa_lora=8,
            decay_lora=8,
        ),
        preprocessor=None,
    )
    with pytest.raises(ValueError, match="rolled back"):
        keras_specdec.SpeculativeSampler(rwkv, 2)
    draft = tiny_causal_lm("gpt2", "draft", seed=3)
    sampler = keras_specdec.SpeculativeSampler(draft, 2)
    with pytest.raises(ValueError, match="rolled back"):
        sampler._check_target(rwkv)


def test_docstring_example_runs():
    doc = keras_specdec.SpeculativeSampler.__doc__
    code = doc.split("```python")[1].split("```")[0]
    code = "\n".join(line[4:] for line in code.splitlines())
    namespace = {}
    exec(compile(code, "SpeculativeSampler docstring", "exec"), namespace)
    stats = namespace["target"].sampler.stats()
    assert stats["emitted_tokens"] == 13


def test_draft_weights_are_not_baked_into_the_program(monkeypatch):
    # Lower (not compile) generate() with a 5k- and an 819k-parameter draft:
    # if the draft's weights were constants the program text would grow by
    # megabytes; as jit arguments it does not grow at all.
    import jax

    target = tiny_causal_lm("gpt2", "target", seed=1)
    ids = np.ones((1, 16), "int32")
    mask = np.zeros((1, 16), bool)
    mask[0, :3] = True
    sizes = {}
    for hidden in (16, 256):
        keras.utils.set_random_seed(0)
        draft = keras_hub.models.GPT2CausalLM(
            backbone=keras_hub.models.GPT2Backbone(
                vocabulary_size=48,
                num_layers=1,
                num_heads=2,
                hidden_dim=hidden,
                intermediate_dim=4 * hidden,
                max_sequence_length=64,
            ),
            preprocessor=None,
        )
        sampler = keras_specdec.SpeculativeSampler(draft, 3)
        target.compile(sampler=sampler)
        captured = {}
        real_jit = jax.jit

        def capturing_jit(fn, **kwargs):
            captured["jitted"] = real_jit(fn, **kwargs)
            return captured["jitted"]

        monkeypatch.setattr(jax, "jit", capturing_jit)
        target.make_generate_function()
        monkeypatch.setattr(jax, "jit", real_jit)
        state = (
            [v.value for v in sampler.variables],
            [v.value for v in target.trainable_variables],
            [v.value for v in target.non_trainable_variables],
        )
        text = (
            captured["jitted"]
            .lower({"token_ids": ids, "padding_mask": mask}, None, state)
            .as_text()
        )
        sizes[draft.count_params()] = len(text)
    (small, small_len), (big, big_len) = sorted(sizes.items())
    assert big - small > 800_000  # 3.2 MB more float32 weights
    assert abs(big_len - small_len) < 20_000  # program text barely changes


@pytest.mark.parametrize(
    "prompts",
    [
        # Every row has padding (id 0) after its prompt: KerasHub's loop
        # condition, `any_equal(prompt, stop_token_ids, ~mask)`, sees the
        # padding as stop tokens and stops before generating anything.
        [[1, 2], [3], []],
        # A full-length row has no padding: it never "stops", so every row
        # generates to max_length, stop id 0 or not.
        [[1, 2, 3, 4, 5, 6, 7, 8, 9, 10], [3], [4, 5, 6]],
    ],
)
def test_stop_token_equal_to_the_padding_id_matches_plain_generate(prompts):
    # Speculative decoding used to generate the full length in the first case.
    target = tiny_causal_lm("gpt2", "target", seed=1)
    draft = noisy_copy(target, noise=0.5, seed=2)
    batch = helpers.ragged_batch(prompts, 10)
    expected = generate(target, "greedy", *batch, stop_token_ids=(0,))
    out = generate(
        target, keras_specdec.SpeculativeSampler(draft, 3), *batch, stop_token_ids=(0,)
    )
    np.testing.assert_array_equal(out["token_ids"], expected["token_ids"])
    np.testing.assert_array_equal(out["padding_mask"], expected["padding_mask"])
    if len(prompts[0]) < 10:
        assert expected["token_ids"].tolist()[0] == [1, 2] + [0] * 8
        assert expected["padding_mask"].tolist()[0] == [True] * 3 + [False] * 7


def test_stats_count_every_call_when_threads_share_one_compiled_model():
    # KerasHub's generate() reads the sampler's variables, runs the compiled
    # program and writes them back: counters updated inside the program as
    # total + this call's counts lost the calls of other threads (4 threads:
    # 55 or 110 emitted tokens counted of 220). The program now returns only
    # its own counts and the write-back adds them under a lock.
    target = tiny_causal_lm("gpt2", "target", seed=1)
    sampler = keras_specdec.SpeculativeSampler(noisy_copy(target, 0.5, seed=2), 3)
    target.compile(sampler=sampler)
    inputs = generate_inputs("gpt2", *ragged_batch(16))
    target.generate(inputs, stop_token_ids=None)  # compiles
    one_call = sampler.stats()
    assert one_call["emitted_tokens"] > 0
    sampler.reset_stats()
    assert sampler.stats()["emitted_tokens"] == 0
    num_threads, calls = 4, 2
    barrier = threading.Barrier(num_threads)

    def run():
        barrier.wait()
        for _ in range(calls):
            target.generate(inputs, stop_token_ids=None)

    threads = [threading.Thread(target=run) for _ in range(num_threads)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stats = sampler.stats()
    # Greedy decoding: every call counts the same.
    for name in keras_specdec.speculative_sampler.STAT_NAMES:
        assert stats[name] == num_threads * calls * one_call[name], name
    assert sampler.trace_count == 1
