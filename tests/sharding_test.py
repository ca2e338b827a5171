"""Speculative `generate()` under Keras' distribution API (JAX).

The scenarios run in `sharding_worker.py`, in a subprocess with 8 virtual CPU
devices (`--xla_force_host_platform_device_count=8` must be set before jax
initialises, and this pytest process has initialised it already). Tiny
float32 Gemma models; the weights come from fixed seeds and the undistributed
reference is computed in the same worker before any distribution is set.
"""

import functools
import json
import math
import os
import subprocess
import sys

import pytest

WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sharding_worker.py")


@functools.lru_cache(maxsize=None)
def run_worker(scenario):
    env = dict(os.environ)
    env["KERAS_BACKEND"] = "jax"
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    env["XLA_FLAGS"] = (
        env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
    ).strip()
    env.pop("CUDA_VISIBLE_DEVICES", None)
    env["JAX_PLATFORMS"] = "cpu"  # 8 host devices, whatever else is present
    proc = subprocess.run(
        [sys.executable, WORKER, scenario],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    lines = [x for x in proc.stdout.splitlines() if x.startswith("RESULTS ")]
    if proc.returncode != 0 or not lines:
        pytest.fail(
            f"sharding worker {scenario!r} failed (rc {proc.returncode}):\n"
            + proc.stderr[-6000:]
        )
    return json.loads(lines[-1][len("RESULTS ") :])


def test_model_parallel_greedy_identical_to_undistributed_greedy():
    r = run_worker("model_parallel")
    assert r["num_devices"] == 8
    # The target's weights really are sharded by GemmaBackbone.get_layout_map.
    target = r["specs"]["target"]
    assert target["token_embedding/embeddings"] == "P('model', 'batch')"
    assert target["decoder_block_0/ffw_gating/kernel"] == "P('batch', 'model')"
    assert target["decoder_block_1/attention/query/kernel"] == (
        "P('model', 'batch', None)"
    )
    assert all("model" not in s for s in r["specs"]["draft_replicated"].values())
    assert r["specs"]["draft_sharded"] == target  # same architecture, same map
    assert r["specs"]["small_draft_sharded"]["token_embedding/embeddings"] == (
        "P('model', 'batch')"
    )
    reference = r["reference"]
    cases = r["cases"]
    assert set(cases) == {
        "plain_greedy",
        "draft_unscoped",
        "draft_replicated",
        "draft_sharded",
        "small_draft_sharded",
    }
    for name, case in cases.items():
        assert case["token_ids"] == reference, name
    # The noisy-copy drafts are (with per-row progress: all 22 judged
    # proposals) accepted; the small random draft is mostly rejected: both
    # the accept and the reject/recover paths ran sharded.
    for name in ("draft_unscoped", "draft_replicated", "draft_sharded"):
        stats = cases[name]["stats"]
        assert stats["accepted_tokens"] > 0, name
        assert stats["target_calls"] < 10, name  # < 17 plain greedy steps
    small = cases["small_draft_sharded"]["stats"]
    assert 0 < small["accepted_tokens"] < small["draft_tokens"]


def test_data_parallel_greedy_identical_to_undistributed_greedy():
    r = run_worker("data_parallel")
    assert r["num_devices"] == 8
    assert r["data_spec"] == "('batch', None)"  # 8 rows over 8 devices
    assert all(s.strip("P(),None ") == "" for s in r["target_specs"].values())
    assert r["token_ids"] == r["reference"]
    assert r["stats"]["accepted_tokens"] > 0
    # Rows stay sharded over the devices (the weights are replicated, so
    # `keras_specdec.sharding` constrains nothing) and no device collects
    # another's rows: only scalar all-reduces (loop conditions, counters).
    for op, shape, _ in r["collectives"]:
        assert op == "all-reduce" and elements(shape) == 1, (op, shape)


def elements(shape):
    dims = shape[shape.index("[") + 1 : -1]
    return math.prod(int(d) for d in dims.split(",") if d)


def test_no_full_weight_gathered_in_compiled_program():
    """The compiled generate program receives the weights sharded and never
    collects a whole sharded weight matrix, or anything as large, on one
    device.

    What Keras / XLA collect by design in plain greedy `generate()` under
    this ModelParallel (7 all-gathers, 37 all-reduces, 1 collective-permute
    in the tiny program): all-reduces of activation partial sums (the hidden
    dim is sharded over "batch" by Gemma's layout map, the heads and vocab
    over "model"), all-gathers of tiny per-shard argmax candidates over the
    vocab shards (`f32[1,4]` / `s32[1,4]`) and of the token / mask buffers
    (`s32[2,20,1]`, `pred[2,20]`): its loop keeps the rows on every device.
    The speculative programs do the same (`keras_specdec.sharding`): rows of
    a model whose weights use the "batch" axis stay replicated over it, so
    no K/V slice or activation is gathered. (Before, the rows stayed
    sharded and XLA gathered each layer's attention output, `f32[2,20,1,8]`
    in the prefill and `f32[2,1,4,1,8]` every round, to meet the output
    kernel's hidden dim sharded over "batch"; the per-row cache writes, a
    scatter, partition without gathers in this XLA, with rows sharded or
    not.)
    """
    r = run_worker("model_parallel_programs")
    weight_shapes = r["sharded_weight_shapes"]
    # The target's and drafts' sharded weights, by full (unsharded) shape.
    assert "f32[48,32]" in weight_shapes  # target embedding (vocab, hidden)
    assert "f32[32,32]" in weight_shapes  # FFN output kernel (inter/2, hidden)
    assert "f32[4,32,8]" in weight_shapes  # attention q/k/v kernels
    smallest_weight = min(elements(s) for s in weight_shapes)  # 256
    programs = r["programs"]
    plain = programs["plain_greedy"]

    def largest(program, op):
        sizes = [elements(s) for o, s, _ in program["collectives"] if o == op]
        return max(sizes, default=0)

    def loop_gathers(program):
        return [s for o, s, in_loop in program["collectives"]
                if o == "all-gather" and in_loop]  # fmt: skip

    for name, program in programs.items():
        assert program["num_partitions"] == 8, name
        # Weights arrive in their variables' shardings (no resharding of
        # sharded weights at the call boundary), the draft's included.
        assert program["weight_sharding_mismatch"] == [], name
        for op, shape, _ in program["collectives"]:
            assert shape not in weight_shapes, (name, op, shape)
        # Nothing gathered is even as large as the smallest sharded weight:
        # no weight, no K/V cache slice, no activation.
        large = {
            shape
            for op, shape, _ in program["collectives"]
            if op == "all-gather" and elements(shape) >= smallest_weight
        }
        assert not large, (name, large)
        for op in ("all-reduce", "collective-permute"):
            # No collective larger than the largest of plain greedy.
            assert largest(program, op) <= largest(plain, op), (name, op)
        ops = {op for op, _, _ in program["collectives"]}
        assert ops <= {"all-gather", "all-reduce", "collective-permute"}, name
    # Per target call, a round with a replicated draft gathers no more than
    # a plain greedy step does (plain: the new token's ids / mask for the
    # embedding lookup and the argmax candidates, 5; a round: the verify
    # window's ids and starts, and the argmax candidates, 4). Outside the
    # loop it also holds KerasHub's first step for empty-prompt rows (5 more
    # tiny gathers) and replicates its buffers once (4).
    plain_loop = loop_gathers(plain)
    assert len(plain_loop) == 5, plain_loop
    replicated_loop = loop_gathers(programs["draft_replicated"])
    assert 0 < len(replicated_loop) <= len(plain_loop), replicated_loop
    # Every gather in a round is a token-sized buffer: at most
    # batch x (gamma + 1) x vocab shards elements (2 x 4 x 4 here).
    for name, program in programs.items():
        assert max(map(elements, loop_gathers(program))) <= 2 * 4 * 4, name
