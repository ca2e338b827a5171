"""Look inside the XLA program that `generate()` compiles.

KerasHub's JAX `generate()` jits `model.generate_step(inputs, stop_token_ids)`
with the sampler's and the model's variables passed as arguments (see
`keras_hub.models.CausalLM.make_generate_function`). `lower_generate` builds
the same function with `jax.jit` and lowers it for one batch of inputs, so
`lower_generate(...).compile().as_text()` is the optimised HLO of the
program `generate()` runs; `loop_buffer_ops` counts what the decoding
loop materialises per iteration (copies, dynamic-update-slices, selects,
fusions), with output sizes, to find per-round work that grows with gamma.

    from keras_specdec import profiling
    inputs = target.preprocessor.generate_preprocess(prompts, sequence_length=128)
    hlo = profiling.lower_generate(target, inputs).compile().as_text()
    print(profiling.format_loop_ops(profiling.loop_buffer_ops(hlo)))
"""

import collections
import itertools
import re

import numpy as np

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


def loop_buffer_ops(hlo_text, min_bytes=0):
    """Ops materialised inside the outermost decoding `while` loop.

    Finds the `while` instructions of the entry computation, takes the one
    whose body is largest (the decoding loop), and walks every computation
    it runs (its body, conditional branches, nested loops and calls; fusions
    count as one materialised op each, their insides are not buffers).

    Returns a `collections.Counter` keyed by `(opcode, result type)` of the
    ops with results of at least `min_bytes` bytes, counting each
    occurrence, plus a `"bytes"` per key in a second Counter:
    `(counts, bytes_per_key)`.
    """
    computations = _computations(hlo_text)
    entry = re.search(r"^ENTRY %?([\w.\-]+)", hlo_text, re.M)
    entry = entry.group(1) if entry else None

    def called(line):
        names = re.findall(r"(?:body|condition|to_apply|calls)=%?([\w.\-]+)", line)
        for group in re.findall(r"branch_computations=\{([^}]*)\}", line):
            names += [n.strip().lstrip("%") for n in group.split(",")]
        names += re.findall(r"(?:true|false)_computation=%?([\w.\-]+)", line)
        return names

    def reachable(root):
        seen, todo = set(), [root]
        while todo:
            name = todo.pop()
            if name in seen or name not in computations:
                continue
            seen.add(name)
            for line in computations[name]:
                if " fusion(" in line:
                    continue  # a fused kernel: one op, see below
                todo += called(line)
        return seen

    bodies = [
        re.search(r"body=%?([\w.\-]+)", line).group(1)
        for line in computations.get(entry, [])
        if re.search(r" while\(", line)
    ]
    if not bodies:
        raise ValueError("No `while` loop in the entry computation of this HLO.")
    body = max(bodies, key=lambda n: len(reachable(n)))
    counts, sizes = collections.Counter(), collections.Counter()
    for name in reachable(body):
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

# The round's phases (keras_specdec.rounds), outermost first wins; anything
# else the decoding loop runs is "loop", the rest of the call "setup".
PHASES = ("propose", "verify", "accept", "commit")
_LOOP_FUNCTIONS = ("body", "cond", "active_rows", "row_limits", "next")


def _index_table(hlo_text, title):
    """`{id: text}` of a numbered table (`FileNames`, `StackFrames`, ...) that
    XLA prints after an HLO module's header."""
    table = {}
    lines = hlo_text.splitlines()
    if title not in lines:
        return table
    for line in lines[lines.index(title) + 1 :]:
        match = re.match(r"^(\d+) (.*)$", line)
        if not match:
            break
        table[int(match.group(1))] = match.group(2)
    return table


def op_sources(hlo_text):
    """`{op name: [(file, function), ...]}` (innermost call first) of every
    HLO op that carries a stack frame; ops without one (many ops inside the
    models) take their nearest operand's, up to 4 operands deep."""
    files = {k: v.strip('"') for k, v in _index_table(hlo_text, "FileNames").items()}
    functions = {
        k: v.strip('"') for k, v in _index_table(hlo_text, "FunctionNames").items()
    }
    locations = {}
    for k, v in _index_table(hlo_text, "FileLocations").items():
        ids = dict(re.findall(r"(\w+)=(\d+)", v))
        locations[k] = (
            files.get(int(ids["file_name_id"]), "?"),
            functions.get(int(ids["function_name_id"]), "?"),
        )
    frames = {}
    for k, v in _index_table(hlo_text, "StackFrames").items():
        ids = dict(re.findall(r"(\w+)=(\d+)", v))
        # XLA prints the parent's id + 1 (1 for a root frame).
        frames[k] = (int(ids["file_location_id"]), int(ids["parent_frame_id"]) - 1)

    def stack(frame):
        out, seen = [], set()
        while frame in frames and frame not in seen:
            seen.add(frame)
            location, frame = frames[frame]
            out.append(locations.get(location, ("?", "?")))
        return out

    framed, operands = {}, {}
    for line in hlo_text.splitlines():
        match = _INSTRUCTION.match(line.strip())
        if not match:
            continue
        name, _, _, rest = match.groups()
        frame = re.search(r"stack_frame_id=(\d+)", rest)
        if frame:
            framed[name] = stack(int(frame.group(1)))
        operands[name] = re.findall(r"%([\w.\-]+)", rest.split("), ")[0])

    def find(name, depth):
        if name in framed:
            return framed[name]
        if depth == 0:
            return None
        for operand in operands.get(name, ()):
            found = find(operand, depth - 1)
            if found is not None:
                return found
        return None

    return {name: find(name, 4) for name in operands}


def phase_of(sources):
    """The phase of an op from its source stack (`op_sources`): the
    outermost `keras_specdec.rounds` phase it runs in, else "loop" inside the
    decoding loop (schedule, conditions, KerasHub's own sampler loop), else
    "setup" (prefill, the draft's initial state, output), or "unknown"."""
    if not sources:
        return "unknown"
    ours = [
        function
        for file, function in sources
        if file.endswith("keras_specdec/rounds.py")
    ]
    for function in reversed(ours):  # outermost first
        if function in PHASES or function == "_propose_block":
            return "propose" if function == "_propose_block" else function
    functions = [function.split(".")[-1] for _, function in sources]
    if any(f in _LOOP_FUNCTIONS for f in functions):
        return "loop"
    return "setup"


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
    (`compiled_generate_text`) tells each op's source stack (`op_sources`,
    `phase_of`). Unlike timing each phase in a loop of its own, this times
    the phases inside the real program: what `propose` and `verify` cost
    there, and what everything else in a round (acceptance, bookkeeping,
    buffer copies) costs.

    Op time is summed over XLA's worker threads and counts only ops (not the
    gaps between them; ops inside a fused kernel count as that kernel, ops
    inside a loop or conditional as themselves), so
    the phases add up to about, not exactly, the walltime; the profiler adds
    ~1 us per op. CPU backend (GPU traces name
    kernels, not HLO ops).

    Args:
        model: a KerasHub model compiled with its sampler.
        inputs: what `generate()` takes: the preprocessed batch (a dict of
            `token_ids`, `padding_mask`, ...) or, with a preprocessor,
            strings.
        calls: traced calls to average over.
        stop_token_ids: as `generate()` takes them.
        max_length: as `generate()` takes it (with a preprocessor).

    Returns:
        `{phase: seconds per call}` for the phases of `phase_of`, plus
        `"walltime"` (seconds per traced call) and `"matched"` (the fraction
        of op time whose op the compiled HLO names: near 1 when the trace and
        the lowered program agree).
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
    sources = op_sources(compiled_generate_text(model, preprocessed, stop_token_ids))
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
                if event.name in sources:
                    matched += event.duration_ns
                phase = phase_of(sources.get(event.name))
                seconds[phase] += event.duration_ns * 1e-9 / calls
    result = dict(seconds)
    result["walltime"] = walltime
    result["matched"] = matched / total if total else float("nan")
    return result
