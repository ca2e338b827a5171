"""Attributing a traced generate() call's op time to the round's phases."""

import jax
import numpy as np
import pytest
from tiny_models import tiny_causal_lm

import keras_specdec
from keras_specdec import phases, rounds
from keras_specdec.bench import profiling

# A module as XLA prints it: the round code's phases are named scopes in the
# ops' `op_name` metadata (`keras_specdec.phases`), inside the decoding
# `while` loop; the draft's own steps run in a loop nested in `propose`.
HLO = """HloModule m

%draft_step (d: f32[4]) -> f32[4] {
  %d = f32[4]{0} parameter(0)
  ROOT %draft = f32[4]{0} negate(%d), metadata={op_name="jit(generate)/while/body/specdec.propose/while/body/vmap(dense)/neg"}
}

%draft_done (d: f32[4]) -> pred[] {
  %d = f32[4]{0} parameter(0)
  ROOT %draft_cond = pred[] constant(false)
}

%f (x: f32[4]) -> f32[4] {
  %x = f32[4]{0} parameter(0)
  ROOT %inside = f32[4]{0} exponential(%x)
}

%body (s: f32[4]) -> f32[4] {
  %s = f32[4]{0} parameter(0)
  %schedule = f32[4]{0} negate(%s), metadata={op_name="jit(generate)/while/body/neg"}
  %drafts = f32[4]{0} while(%schedule), condition=%draft_done, body=%draft_step
  %target = f32[4]{0} negate(%drafts), metadata={op_name="jit(generate)/while/body/specdec.verify/dot_general"}
  %attention = f32[4]{0} fusion(%target), kind=kLoop, calls=%f
  %nested = f32[4]{0} negate(%attention), metadata={op_name="jit(generate)/while/body/specdec.commit/specdec.accept/neg"}
  ROOT %copy = f32[4]{0} copy(%nested)
}

%cond (s: f32[4]) -> pred[] {
  %s = f32[4]{0} parameter(0)
  ROOT %more = pred[] constant(true), metadata={op_name="jit(generate)/while/cond/lt"}
}

ENTRY %main (p: f32[4]) -> f32[4] {
  %p = f32[4]{0} parameter(0)
  %prefill = f32[4]{0} negate(%p), metadata={op_name="jit(generate)/neg"}
  %loop = f32[4]{0} while(%prefill), condition=%cond, body=%body
  ROOT %output = f32[4]{0} negate(%loop), metadata={op_name="jit(generate)/specdec_output/neg"}
}
"""  # noqa: E501


def test_ops_take_the_outermost_phase_scope_else_loop_or_setup():
    phases = profiling.op_phases(HLO)
    assert phases["prefill"] == "setup"
    assert phases["output"] == "setup"  # a name that only looks alike
    assert phases["schedule"] == "loop"
    assert phases["more"] == "loop"  # the loop's condition
    assert phases["draft"] == "propose"  # in a loop nested in the phase
    assert phases["target"] == "verify"
    assert phases["nested"] == "commit"  # the outermost phase scope wins
    # No metadata: the nearest operand's (a fused kernel of verify; a copy
    # XLA inserted after commit).
    assert phases["attention"] == "verify"
    assert phases["copy"] == "commit"
    assert phases["p"] == "setup"
    # The decoding loop is the outer while: the draft's loop is inside it.
    assert {"body", "cond", "draft_step", "draft_done"} <= profiling.decoding_loop(HLO)
    assert "main" not in profiling.decoding_loop(HLO)


def test_round_functions_declare_their_phase_as_a_named_scope():
    for name in phases.PHASES:
        assert getattr(rounds, name).phase == name

    @phases.phase("verify")
    def double(x):
        """Doc."""
        return x * 2.0

    assert double.__doc__ == "Doc." and double(1.0) == 2.0
    text = jax.jit(double).lower(1.0).as_text(debug_info=True)
    assert "specdec.verify" in text
    with pytest.raises(ValueError, match="propose"):
        phases.phase("draft")


def test_a_traced_call_puts_almost_all_op_time_in_named_phases():
    target = tiny_causal_lm("gpt2", "target", seed=1)
    draft = tiny_causal_lm("gpt2", "draft", seed=2)
    target.compile(sampler=keras_specdec.SpeculativeSampler(draft, 3))
    token_ids = np.zeros((2, 32), "int32")
    token_ids[:, :4] = [[1, 2, 3, 4], [5, 6, 7, 8]]
    inputs = {"token_ids": token_ids, "padding_mask": token_ids > 0}
    seconds = profiling.trace_phase_seconds(target, inputs, calls=2)
    # The trace's op names are those of the lowered program.
    assert seconds["matched"] > 0.95, seconds
    assert seconds.get("unknown", 0.0) < 0.05 * seconds["walltime"], seconds
    for phase in ("propose", "verify", "accept", "commit", "loop", "setup"):
        assert seconds.get(phase, 0.0) > 0.0, (phase, seconds)
