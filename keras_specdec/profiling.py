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
