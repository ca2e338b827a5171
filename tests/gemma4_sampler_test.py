"""`SpeculativeSampler(draft=<Gemma4AssistantCausalLM>)` on a `Gemma4CausalLM`:
greedy identity (ragged, an empty prompt, per-row stop tokens), "auto" gamma,
no retrace, errors before compiling."""

import keras_hub
import numpy as np
import pytest
from gemma4_models import tiny_gemma4_assistant, tiny_gemma4_target
from helpers import generate, ragged_batch

import keras_specdec

HEADS = {"centroid": True, "dense": False}
# Lengths 0 to 6: an empty prompt, a 1-token prompt (h_{-1} = zeros), and
# rows far enough apart that they sit at different positions every round.
PROMPTS = [[], [3], [1, 2, 3], [4, 5, 6, 7, 1], [2, 6, 0, 3, 5, 7], [6, 6]]
MAX_LENGTH = 20


@pytest.fixture(scope="module")
def target():
    return tiny_gemma4_target()


@pytest.fixture(scope="module")
def batch():
    return ragged_batch(PROMPTS, MAX_LENGTH)


@pytest.fixture(scope="module")
def plain(target, batch):
    """The target's own greedy output, without and with a stop token that
    cuts rows at different positions."""
    token_ids, padding_mask = batch
    out = generate(target, "greedy", token_ids, padding_mask, family="gemma4")
    generated = out["token_ids"][~padding_mask]
    counts = np.bincount(generated, minlength=8)
    counts[0] = 0  # not the padding id (KerasHub also finds it in padding)
    stop = int(counts.argmax())
    stopped = generate(
        target, "greedy", token_ids, padding_mask, family="gemma4",
        stop_token_ids=(stop,),
    )  # fmt: skip
    return out, stop, stopped


@pytest.mark.parametrize("head", sorted(HEADS))
def test_greedy_identity_ragged_empty_prompt_stop_tokens(target, batch, plain, head):
    token_ids, padding_mask = batch
    expected, stop, expected_stopped = plain
    ends = expected_stopped["padding_mask"].sum(1)
    assert len(set(ends.tolist())) > 2  # rows stop at different positions
    sampler = keras_specdec.SpeculativeSampler(tiny_gemma4_assistant(HEADS[head]), 3)
    out = generate(target, sampler, token_ids, padding_mask, family="gemma4")
    np.testing.assert_array_equal(out["token_ids"], expected["token_ids"])
    stats = sampler.stats()
    # The assistant (random weights) is right sometimes, not always.
    assert 0 < stats["accepted_tokens"] < stats["draft_tokens"], stats
    out = generate(
        target, sampler, token_ids, padding_mask, family="gemma4",
        stop_token_ids=(stop,),
    )  # fmt: skip
    np.testing.assert_array_equal(out["padding_mask"], expected_stopped["padding_mask"])
    np.testing.assert_array_equal(out["token_ids"], expected_stopped["token_ids"])


def test_auto_gamma_greedy_identity(target, batch, plain):
    token_ids, padding_mask = batch
    sampler = keras_specdec.SpeculativeSampler(
        tiny_gemma4_assistant(True), "auto", max_speculative_tokens=4,
        gamma_schedule="heuristic",
    )  # fmt: skip
    out = generate(target, sampler, token_ids, padding_mask, family="gemma4")
    np.testing.assert_array_equal(out["token_ids"], plain[0]["token_ids"])
    assert sampler.stats()["draft_tokens"] > 0


def test_no_retrace_and_assistant_weights_are_arguments(target, batch):
    token_ids, padding_mask = batch
    assistant = tiny_gemma4_assistant(False)
    base = keras_hub.samplers.TopKSampler(k=4, temperature=0.8)
    sampler = keras_specdec.SpeculativeSampler(assistant, 3, base_sampler=base, seed=3)
    target.compile(sampler=sampler)

    def run(token_ids):
        inputs = {"token_ids": token_ids, "padding_mask": padding_mask}
        return np.asarray(target.generate(inputs, stop_token_ids=None)["token_ids"])

    first = run(token_ids)
    assert sampler.trace_count == 1
    before = sampler.stats()
    # New prompt values, same shapes, new assistant weights: no retrace, and
    # the new weights reach the compiled program (other proposals).
    assistant.set_weights([w * 1.5 for w in assistant.get_weights()])
    sampler.reset_stats()
    second = run(np.where(padding_mask, (token_ids + 1) % 8, 0).astype("int32"))
    assert sampler.trace_count == 1
    assert sampler.stats() != before
    assert not np.array_equal(first, second)
    assert {id(v) for v in assistant.weights} <= {id(v) for v in sampler.variables}


def test_assistant_needs_a_gemma4_target(batch):
    from tiny_models import tiny_causal_lm

    target = tiny_causal_lm("gpt2", "target", seed=1)
    # GPT-2's tiny vocabulary differs too; the target kind is named first.
    sampler = keras_specdec.SpeculativeSampler(tiny_gemma4_assistant(False), 3)
    target.compile(sampler=sampler)
    with pytest.raises(ValueError, match="`Gemma4CausalLM` target"):
        target.generate(
            {"token_ids": batch[0], "padding_mask": batch[1]}, stop_token_ids=None
        )
    assert sampler.trace_count == 0
