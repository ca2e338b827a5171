"""Attributing a traced generate() call's op time to the round's phases."""

import numpy as np
from tiny_models import tiny_causal_lm

import keras_specdec
from keras_specdec import profiling

# A module as XLA prints it: numbered tables of file names, function names,
# locations and stack frames (XLA prints parent_frame_id as the parent's id
# + 1, 1 for a root frame).
HLO = """HloModule m

FileNames
1 "/x/keras_specdec/rounds.py"
2 "/x/keras_specdec/speculative_sampler.py"

FunctionNames
1 "speculative_round"
2 "propose"
3 "verify"
4 "SpeculativeSampler.__call__.<locals>.body"
5 "SpeculativeSampler.__call__"

FileLocations
1 {file_name_id=2 function_name_id=5 line=1 end_line=1 column=1 end_column=2}
2 {file_name_id=2 function_name_id=4 line=2 end_line=2 column=1 end_column=2}
3 {file_name_id=1 function_name_id=1 line=3 end_line=3 column=1 end_column=2}
4 {file_name_id=1 function_name_id=2 line=4 end_line=4 column=1 end_column=2}
5 {file_name_id=1 function_name_id=3 line=5 end_line=5 column=1 end_column=2}

StackFrames
1 {file_location_id=1 parent_frame_id=1}
2 {file_location_id=2 parent_frame_id=2}
3 {file_location_id=3 parent_frame_id=3}
4 {file_location_id=4 parent_frame_id=4}
5 {file_location_id=5 parent_frame_id=4}

ENTRY %main (p: f32[4]) -> f32[4] {
  %p = f32[4]{0} parameter(0)
  %prefill = f32[4]{0} negate(%p), metadata={op_name="a" stack_frame_id=1}
  %schedule = f32[4]{0} negate(%prefill), metadata={op_name="b" stack_frame_id=2}
  %draft = f32[4]{0} negate(%schedule), metadata={op_name="c" stack_frame_id=4}
  %target = f32[4]{0} negate(%draft), metadata={op_name="d" stack_frame_id=5}
  %attention = f32[4]{0} fusion(%target), kind=kLoop, calls=%f
  ROOT %other = f32[4]{0} negate(%attention)
}
"""


def test_ops_take_the_outermost_phase_of_their_source_stack():
    sources = profiling.op_sources(HLO)
    phases = {name: profiling.phase_of(sources.get(name)) for name in sources}
    assert phases["prefill"] == "setup"
    assert phases["schedule"] == "loop"
    assert phases["draft"] == "propose"
    assert phases["target"] == "verify"
    # No stack frame: the nearest operand's (a fused kernel of verify).
    assert phases["attention"] == "verify"
    assert phases["p"] == "unknown"


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
    for phase in ("propose", "verify", "accept", "commit", "setup"):
        assert seconds.get(phase, 0.0) > 0.0, (phase, seconds)
