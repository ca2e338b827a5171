"""Look inside the XLA program that `generate()` compiles.

KerasHub's JAX `generate()` jits `model.generate_step(inputs, stop_token_ids)`
with the sampler's and the model's variables passed as arguments (see
`keras_hub.models.CausalLM.make_generate_function`). `lower_generate` builds
the same function with `jax.jit` and lowers it for one batch of inputs, so
`lower_generate(...).compile().as_text()` is the optimised HLO of the
program `generate()` runs; `loop_buffer_ops` counts what the decoding
loop materialises per iteration (copies, dynamic-update-slices, selects,
fusions), with output sizes, to find per-round work that grows with gamma.

    from keras_specdec.bench import profiling
    inputs = target.preprocessor.generate_preprocess(prompts, sequence_length=128)
    hlo = profiling.lower_generate(target, inputs).compile().as_text()
    print(profiling.format_loop_ops(profiling.loop_buffer_ops(hlo)))
"""

import collections
import itertools
import re

import numpy as np

from keras_specdec import phases

# bytes per element of HLO element types
_DTYPE_BYTES = {
    "pred": 1, "s8": 1, "u8": 1, "s16": 2, "u16": 2, "f16": 2, "bf16": 2,
    "s32": 4, "u32": 4, "f32": 4, "s64": 8, "u64": 8, "f64": 8,
}  # fmt: skip


def lower_generate(model, inputs, stop_token_ids=None):
    """`jax.stages.Lowered` of the program `model.generate()` compiles.

    Args:
        model: a KerasHub `CausalLM` / `Seq2SeqLM`, compiled with its sampler.
        inputs: the preprocessed batch `generate_step` takes (a dict of
            arrays, e.g. `model.preprocessor.generate_preprocess(prompts,
            sequence_length=max_length)`).
        stop_token_ids: a tuple of ids or None, as `generate()` passes it.
    """
    import jax
    import keras
    from keras import ops

    model.make_generate_function()  # builds the sampler's state once
    sampler_vars = list(model.sampler.variables)
    trainable = list(model.trainable_variables)
    non_trainable = list(model.non_trainable_variables)

    def generate(inputs, state):
        mapping = itertools.chain(*(zip(v, s) for v, s in zip(
            (sampler_vars, trainable, non_trainable), state
        )))  # fmt: skip
        with keras.StatelessScope(state_mapping=mapping):
            return model.generate_step(inputs, stop_token_ids)

    state = tuple(
        [v.value for v in variables]
        for variables in (sampler_vars, trainable, non_trainable)
    )
    inputs = {k: ops.convert_to_tensor(np.asarray(v)) for k, v in inputs.items()}
    return jax.jit(generate).lower(inputs, state)


def compiled_generate_text(model, inputs, stop_token_ids=None):
    """The optimised HLO text of the very executable `generate()` runs on
    these preprocessed inputs.

    KerasHub keeps its jitted function in the closure of
    `model.generate_function`; lowering that function with the arguments
    `generate()` passes it reproduces its program op for op (op names
    included, which a trace's events carry). Falls back to
    `lower_generate` (the same computation, but XLA may number some ops
    differently) when the closure holds no jitted function.
    """
    import jax
    from keras import ops

    function = model.make_generate_function()
    jitted = [
        cell.cell_contents
        for cell in getattr(function, "__closure__", None) or ()
        if hasattr(cell.cell_contents, "lower")
    ]
    if not jitted:
        return lower_generate(model, inputs, stop_token_ids).compile().as_text()
    state = tuple(
        [v.value for v in variables]
        for variables in (
            model.sampler.variables,
            model.trainable_variables,
            model.non_trainable_variables,
        )
    )
    inputs = jax.tree.map(ops.convert_to_tensor, dict(inputs))
    lowered = jitted[0].lower(inputs, stop_token_ids, state)
    return lowered.compile().as_text()


def _shape_bytes(shape_text):
    """Bytes of an HLO result type such as `f32[1,10,136,4,64]{...}` or a
    tuple of them."""
    total = 0
    for dtype, dims in re.findall(r"\b([a-z]+\d*)\[([\d,]*)\]", shape_text):
        if dtype in _DTYPE_BYTES:
            size = int(np.prod([int(d) for d in dims.split(",") if d])) if dims else 1
            total += size * _DTYPE_BYTES[dtype]
    return total


def _computations(hlo_text):
    """{name: [instruction lines]} of an HLO module's text."""
    computations, name = {}, None
    for line in hlo_text.splitlines():
        header = re.match(r"^(?:ENTRY )?%?([\w.\-]+) .*\{\s*$", line)
        if header and not line.startswith(" "):
            name = header.group(1)
            computations[name] = []
        elif name and line.startswith("  "):
            computations[name].append(line.strip())
    return computations


# Ops that materialise no new buffer (views, plumbing).
_NOT_BUFFERS = ("parameter", "constant", "get-tuple-element", "tuple", "bitcast")

_INSTRUCTION = re.compile(r"^(?:ROOT )?%?([\w.\-]+) = (.+?) ([\w\-]+)\((.*)$")


def _called(line):
    """Names of the computations an HLO instruction line runs (not a fused
    kernel's: callers skip fusions)."""
    names = re.findall(r"(?:body|condition|to_apply|calls)=%?([\w.\-]+)", line)
    for group in re.findall(r"branch_computations=\{([^}]*)\}", line):
        names += [n.strip().lstrip("%") for n in group.split(",")]
    names += re.findall(r"(?:true|false)_computation=%?([\w.\-]+)", line)
    return names


def _reachable(computations, root):
    """Computations that `root` runs, itself included (through loops,
    conditionals and calls; a fusion is one op, its insides are not
    followed)."""
    seen, todo = set(), [root]
    while todo:
        name = todo.pop()
        if name in seen or name not in computations:
            continue
        seen.add(name)
        for line in computations[name]:
            if " fusion(" in line:
                continue  # a fused kernel: one op
            todo += _called(line)
    return seen


def decoding_loop(hlo_text, computations=None):
    """Names of the computations the decoding loop runs: of the `while`
    loops in the module, the one whose body runs the most computations (the
    decoding loop holds the draft's and the target's calls, and any inner
    loops), with everything its body and condition run.

    Raises:
        ValueError: the module has no `while` loop.
    """
    computations = computations or _computations(hlo_text)
    loops = [
        (re.search(r"body=%?([\w.\-]+)", line).group(1), _called(line))
        for lines in computations.values()
        for line in lines
        if re.search(r" while\(", line)
    ]
    if not loops:
        raise ValueError("No `while` loop in this HLO module.")
    runs = [
        set().union(*(_reachable(computations, n) for n in called))
        for _, called in loops
    ]
    return max(runs, key=len)


def loop_buffer_ops(hlo_text, min_bytes=0):
    """Ops materialised inside the outermost decoding `while` loop.

    Walks every computation the decoding loop runs (`decoding_loop`: its
    body, conditional branches, nested loops and calls; fusions count as one
    materialised op each, their insides are not buffers).

    Returns a `collections.Counter` keyed by `(opcode, result type)` of the
    ops with results of at least `min_bytes` bytes, counting each
    occurrence, plus a `"bytes"` per key in a second Counter:
    `(counts, bytes_per_key)`.
    """
    computations = _computations(hlo_text)
    counts, sizes = collections.Counter(), collections.Counter()
    for name in decoding_loop(hlo_text, computations):
        for line in computations[name]:
            match = _INSTRUCTION.match(line)
            if not match:
                continue
            _, result_type, opcode, _ = match.groups()
            if opcode in _NOT_BUFFERS:
                continue
            nbytes = _shape_bytes(result_type)
            if nbytes < min_bytes:
                continue
            key = (opcode, re.sub(r"\{[^}]*\}", "", result_type))
            counts[key] += 1
            sizes[key] += nbytes
    return counts, sizes


def summarize_loop_ops(hlo_text, min_bytes=0):
    """`{opcode: (count, total result bytes)}` inside the decoding loop."""
    counts, sizes = loop_buffer_ops(hlo_text, min_bytes)
    summary = collections.defaultdict(lambda: [0, 0])
    for (opcode, _), n in counts.items():
        summary[opcode][0] += n
    for (opcode, _), b in sizes.items():
        summary[opcode][1] += b
    return {k: tuple(v) for k, v in sorted(summary.items())}


def format_loop_ops(counts_and_sizes, top=25):
    """Text table of the largest `(opcode, type)` entries by total bytes."""
    counts, sizes = counts_and_sizes
    lines = [f"{'count':>6} {'total MB':>9}  opcode  result type"]
    for key, nbytes in sizes.most_common(top):
        lines.append(f"{counts[key]:>6} {nbytes / 1e6:>9.3f}  {key[0]}  {key[1]}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------
# Where the time of a generate() call goes, from a profiler trace.

# The round's phases are the `jax.named_scope`s the round code declares
# (`keras_specdec.phases`): an op whose HLO `op_name` holds
# "specdec.<phase>" ran in that phase (the outermost such scope wins).
# Any other op of the decoding loop is "loop" (schedule, conditions,
# KerasHub's own sampler loop), the rest of the call "setup" (prefill, the
# draft's initial state, output).
PHASES = phases.PHASES
_PHASE_SCOPE = re.compile(
    r"(?:^|[/(])" + re.escape(phases.PREFIX) + r"(" + "|".join(PHASES) + r")\b"
)


def op_phases(hlo_text):
    """`{op name: phase}` of every instruction of an HLO module.

    The phase is the outermost `specdec.<phase>` scope in the op's
    `op_name` metadata; ops without metadata (copies XLA inserts, some
    fusions) take their nearest operand's, up to 4 operands deep. Ops in no
    phase scope are "loop" inside the decoding loop (`decoding_loop`),
    else "setup".
    """
    computations = _computations(hlo_text)
    try:
        in_loop = decoding_loop(hlo_text, computations)
    except ValueError:
        in_loop = set()  # no loop: everything is setup
    named, operands, loop_ops = {}, {}, set()
    for computation, lines in computations.items():
        for line in lines:
            match = _INSTRUCTION.match(line)
            if not match:
                continue
            name, _, _, rest = match.groups()
            op_name = re.search(r'op_name="([^"]*)"', rest)
            if op_name:
                named[name] = op_name.group(1)
            operands[name] = re.findall(r"%([\w.\-]+)", rest.split("), ")[0])
            if computation in in_loop:
                loop_ops.add(name)

    def scope(name, depth):
        if name in named:
            found = _PHASE_SCOPE.search(named[name])
            return found.group(1) if found else None
        if depth == 0:
            return None
        for operand in operands.get(name, ()):
            found = scope(operand, depth - 1)
            if found is not None:
                return found
        return None

    return {
        name: scope(name, 4) or ("loop" if name in loop_ops else "setup")
        for name in operands
    }


def _is_op_event(name):
    """Whether a trace event is an XLA op (not the executor's bookkeeping,
    the end of an asynchronous op, or a control-flow op whose time is that
    of the ops it runs, which may run on another thread)."""
    if name.startswith(("ThunkExecutor", "Slinky", "Threadpool", "end: ")):
        return False
    return not re.match(r"^(while|conditional|call)(\.\d+)?$", name)


def trace_phase_seconds(model, inputs, calls=3, stop_token_ids=None, max_length=None):
    """Seconds of XLA:CPU op time per `generate()` call, by round phase.

    Runs `model.generate(inputs)` once (compile and warm-up), then traces
    `calls` calls with `jax.profiler` and attributes every op event of the
    trace to the phase that emitted it: the compiled HLO of the same program
    (`compiled_generate_text`) tells each op's phase from the named scopes
    the round code declares (`op_phases`). Unlike timing each phase in a
    loop of its own, this times the phases inside the real program: what
    `propose` and `verify` cost there, and what everything else in a round
    (acceptance, bookkeeping, buffer copies) costs.

    Op time is summed over XLA's worker threads and counts only ops (not the
    gaps between them; ops inside a fused kernel count as that kernel, ops
    inside a loop or conditional as themselves), so the phases add up to
    about, not exactly, the walltime; the profiler adds ~1 us per op. CPU
    backend (GPU traces name kernels, not HLO ops).

    Args:
        model: a KerasHub model compiled with its sampler.
        inputs: what `generate()` takes: the preprocessed batch (a dict of
            `token_ids`, `padding_mask`, ...) or, with a preprocessor,
            strings.
        calls: traced calls to average over.
        stop_token_ids: as `generate()` takes them.
        max_length: as `generate()` takes it (with a preprocessor).

    Returns:
        `{phase: seconds per call}` for the phases of `op_phases` (and
        "unknown": ops the compiled HLO does not name), plus `"walltime"`
        (seconds per traced call) and `"matched"` (the fraction of op time
        whose op the compiled HLO names: near 1 when the trace and the
        lowered program agree).
    """
    import glob
    import tempfile
    import time

    import jax

    def generate():
        return model.generate(
            inputs, max_length=max_length, stop_token_ids=stop_token_ids
        )

    generate()
    preprocessed = inputs
    if not isinstance(inputs, dict):
        preprocessed = model.preprocessor.generate_preprocess(
            inputs, sequence_length=max_length
        )
    phase_of = op_phases(compiled_generate_text(model, preprocessed, stop_token_ids))
    with tempfile.TemporaryDirectory() as folder:
        with jax.profiler.trace(folder):
            start = time.perf_counter()
            for _ in range(calls):
                generate()
            walltime = (time.perf_counter() - start) / calls
        (path,) = glob.glob(f"{folder}/**/*.xplane.pb", recursive=True)
        profile = jax.profiler.ProfileData.from_file(path)
    seconds = collections.Counter()
    matched = total = 0
    for plane in profile.planes:
        for line in plane.lines:
            if line.name == "python":
                continue
            events = sorted(
                (e for e in line.events if _is_op_event(e.name)),
                key=lambda e: (e.start_ns, -e.duration_ns),
            )
            end = -1
            for event in events:
                if event.start_ns < end:
                    continue  # inside the previous op (a fused kernel's parts)
                end = event.start_ns + event.duration_ns
                total += event.duration_ns
                if event.name in phase_of:
                    matched += event.duration_ns
                # An op the compiled HLO does not name: "unknown".
                phase = phase_of.get(event.name, "unknown")
                seconds[phase] += event.duration_ns * 1e-9 / calls
    result = dict(seconds)
    result["walltime"] = walltime
    result["matched"] = matched / total if total else float("nan")
    return result
