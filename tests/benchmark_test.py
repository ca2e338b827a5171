"""`python -m keras_specdec.bench` end to end on a tiny random pair (offline)."""

import json
import math
import os

import pytest
from fake_pairs import make_fake_ende

from keras_specdec.bench import cli, report, run


@pytest.fixture(autouse=True)
def no_compilation_cache():
    # The benchmark measures compile times (first call - a timed call): a
    # program another test compiled must not come from the run's cache.
    import jax

    enabled = jax.config.jax_enable_compilation_cache
    jax.config.update("jax_enable_compilation_cache", False)
    yield
    jax.config.update("jax_enable_compilation_cache", enabled)


@pytest.fixture(scope="module")
def fake_ende(tmp_path_factory):
    # Named "ende" so that pairs.load restores its sequence length (64).
    return make_fake_ende(str(tmp_path_factory.mktemp("fake") / "ende"))


def test_benchmark_writes_table_2_3_compile_and_breakdown_rows(fake_ende, tmp_path):
    out = str(tmp_path / "bench")
    rows = cli.main(
        [
            "--pair", fake_ende, "--gammas", "1", "2", "--temperatures", "0",
            "--schedules", "auto", "--model-free-drafts", "prompt_lookup",
            "--model-free-gammas", "2", "--max-length", "12", "--num-prompts",
            "2", "--repetitions", "1", "--cost-repetitions", "2", "--out", out,
        ]
    )  # fmt: skip
    # Gammas 1 and 2, auto, prompt lookup at gamma 2 (one temperature: the
    # table's layout does not depend on it, and each row costs a compile).
    assert len(rows) == 4
    assert [r["gamma"] for r in rows] == [1, 2, "auto", 2]
    for r in rows:
        assert r["batch_size"] == 1
        if r["draft"] == "prompt_lookup" and math.isnan(r["alpha"]):
            # No n-gram of these short random prompts repeats: prompt lookup
            # proposed nothing, so every round was a plain target step and
            # alpha (accepted / judged) is undefined.
            assert r["tokens_per_target_call"] == pytest.approx(1.0)
            assert math.isfinite(r["measured_speedup"])
            continue
        assert 0.0 <= r["alpha"] <= 1.0
        assert r["tokens_per_target_call"] >= 1.0
        for key in (
            "measured_speedup", "predicted_speedup", "efficiency", "c",
            "verify_cost", "speculative_compile_s", "baseline_compile_s",
            "round_ms", "target_step_ms", "rounds_per_call",
        ):  # fmt: skip
            assert math.isfinite(r[key]) and r[key] >= 0.0, key
        if isinstance(r["gamma"], str):
            # A schedule's rounds have different gammas: no single draft /
            # verify split, so the breakdown is marked undefined, not guessed.
            assert math.isnan(r["draft_ms"]) and math.isnan(r["verify_ms"])
            continue
        # draft + verify + other add up to the measured round.
        parts = r["draft_ms"] + r["verify_ms"] + r["other_ms"]
        assert parts == pytest.approx(r["round_ms"])
        if r["alpha"] < 1.0:
            # Theorem 3.8 at the row's alpha, gamma and c.
            a, g, c = r["alpha"], r["gamma"], r["c"]
            expected = (1 - a ** (g + 1)) / ((1 - a) * (g * c + 1))
            assert r["predicted_speedup"] == pytest.approx(expected)
        assert 0.0 <= r["target_distinct_4grams"] <= 1.0
    with open(os.path.join(out, "results.json")) as f:
        assert len(json.load(f)["rows"]) == 4
    with open(os.path.join(out, "results.md")) as f:
        markdown = f.read()
    for section in (
        "Table 3 analogue",
        "Adaptive gamma vs the best fixed gamma",
        "distinct 4-gram ratio",
        "compile s |",
        "Compile time",
        "| target alone | gamma 1 | gamma 2 | auto | auto / gamma 2 |",
        "Where a round's time goes",
        "| round | draft | verify | other |",
    ):
        assert section in markdown, section
    assert "Batches (rows cycle" not in markdown  # one batch size
    assert {"speedup_vs_gamma.png", "alpha_vs_gamma.png"} <= set(os.listdir(out))


@pytest.mark.slow  # a second end-to-end benchmark run (~2 min on 2 cores); CI time
def test_benchmark_batch_sizes_1_and_2(fake_ende, tmp_path):
    out = str(tmp_path / "bench")
    rows = cli.main(
        [
            "--pair", fake_ende, "--gammas", "2", "--temperatures", "1",
            "--max-length", "12", "--num-prompts", "3", "--repetitions", "1",
            "--cost-repetitions", "2", "--batch-sizes", "1", "2", "--out", out,
        ]
    )  # fmt: skip
    assert [r["batch_size"] for r in rows] == [1, 2]
    assert rows[0]["tokens_per_target_call_vs_first_batch"] == 1.0
    for r in rows:
        assert r["tokens_per_target_call"] >= 1.0
        assert math.isfinite(r["verify_cost"]) and r["verify_cost"] > 0
    with open(os.path.join(out, "results.md")) as f:
        markdown = f.read()
    assert "Batches (rows cycle" in markdown
    assert "| T | draft | gamma | batch | tokens/row-call | vs batch 1 |" in markdown
    names = set(os.listdir(out))
    assert {"speedup_vs_gamma.png", "speedup_vs_gamma_batch2.png"} <= names
    assert "speedup_vs_batch.png" in names


def test_default_out_is_a_new_folder_outside_benchmarks(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    seen = {}
    monkeypatch.setattr(
        cli, "run", lambda args, on_rows=None: seen.setdefault("args", args)
    )
    monkeypatch.setattr(cli, "to_markdown", lambda rows, command: "")
    monkeypatch.setattr(cli, "plot", lambda rows, out: [])
    monkeypatch.setattr(cli.json, "dump", lambda *a, **k: None)
    cli.main(["--pair", "code"])
    out = seen["args"].out
    assert not os.path.normpath(out).startswith("benchmarks")
    assert os.path.normpath(out).startswith(cli.DEFAULT_OUT_ROOT + os.sep + "code-")
    assert os.path.isdir(out)


def test_help_gives_every_option_a_sentence_and_its_default(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    text = capsys.readouterr().out
    for option in ("--batch-sizes", "--out", "--gammas", "--repetitions"):
        assert option in text
    assert "(default: [1])" in text  # --batch-sizes
    assert "(default: 128)" in text  # --max-length


def test_prompt_batches_cycle_through_the_prompts():
    prompts = ["a", "b", "c"]
    assert run.prompt_batches(prompts, 1) == [["a"], ["b"], ["c"]]
    assert run.prompt_batches(prompts, 2) == [["a", "b"], ["c", "a"]]
    assert run.prompt_batches(prompts, 4) == [["a", "b", "c", "a"]]


def test_profiled_costs_are_per_round_and_per_plain_step():
    # A traced speculative call: 10 rounds; the target alone: 40 steps.
    spec = {"rounds": 10.0, "alpha": 0.5, "seconds": {
        "propose": 0.010, "verify": 0.030, "accept": 0.001, "commit": 0.001,
        "loop": 0.002, "setup": 0.005, "walltime": 0.05, "matched": 0.99,
    }}  # fmt: skip
    plain = {"rounds": 40.0, "seconds": {
        "loop": 0.080, "setup": 0.004, "walltime": 0.09,
    }}  # fmt: skip
    row = report._profiled(
        alpha=0.9,  # all prompts' alpha; the traced batch's (0.5) is used
        gamma=2,
        model_draft=True,
        base={"median": 0.09, "profile": plain},
        speculative={"median": 0.05, "profile": spec},
    )
    per_round = row["profiled_ms_per_round"]
    assert per_round["propose"] == pytest.approx(1.0)
    assert per_round["verify"] == pytest.approx(3.0)
    assert row["profiled_plain_step_ms"] == pytest.approx(2.0)
    # c = propose per draft step / plain step, v = verify / plain step.
    assert row["profiled_c"] == pytest.approx(0.25)
    assert row["profiled_v"] == pytest.approx(1.5)
    expected = (1 - 0.5**3) / ((1 - 0.5) * (2 * 0.25 + 1.5))  # Theorem 3.8
    assert row["profiled_predicted"] == pytest.approx(expected)
    # The traced calls' own speedup (their walltimes), not the timed rows'.
    assert row["profiled_measured"] == pytest.approx(0.09 / 0.05)
    assert row["profiled_efficiency"] == pytest.approx((0.09 / 0.05) / expected)
    assert row["profiled_model_call_share"] == pytest.approx(4.0 / 4.4)
    # Plus setup: 40 plain steps of 2 ms after 4 ms of setup, against 5 ms
    # of setup and those 80 ms sped up by Theorem 3.8.
    with_setup = (4.0 + 80.0) / (5.0 + 80.0 / expected)
    assert row["profiled_predicted_with_setup"] == pytest.approx(with_setup)
    row.update(temperature=0, batch_size=1, draft="d", gamma=2)
    table = "\n".join(report._profiled_table([row]))
    assert (
        "| 0 | 1 | d | 2 | 1.00 | 3.00 | 0.10 | 0.10 | 0.20 | 4.40 | 0.909 |" in table
    )
    # Without --profile a row has no profiled columns and no table.
    assert report._profiled(0.5, 2, True, {"median": 1}, {"median": 1}) == {}


def test_token_id_prompts_refuse_what_needs_a_tokenizer(fake_ende, tmp_path, capsys):
    # Checked before any model loads: an encoder-decoder pair, and drafts
    # fitted on text.
    prompts = str(tmp_path / "prompts.json")
    with pytest.raises(SystemExit):
        cli.main(["--pair", fake_ende, "--prompts", prompts])
    assert "causal pairs only" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(
            ["--pair", "code", "--prompts", prompts, "--model-free-drafts", "bigram"]
        )
    assert "prompt_lookup only" in capsys.readouterr().err


@pytest.mark.slow  # compiles the shipped code pair's target and draft (~2 min)
def test_token_id_prompts_time_the_pair_without_its_tokenizer(tmp_path):
    # What GPU machines without TensorFlow run: prompts written as token ids
    # here, then timed with models that have no preprocessor.
    prompts = str(tmp_path / "prompts.json")
    common = ["--pair", "code", "--num-prompts", "2", "--prompt-tokens", "8"]
    assert cli.main([*common, "--write-prompts", prompts]) is None
    with open(prompts) as f:
        ids = json.load(f)["token_ids"]
    assert len(ids) == 2 and all(1 < len(row) <= 9 for row in ids)
    out = str(tmp_path / "bench")
    rows = cli.main(
        [
            *common, "--prompts", prompts, "--gammas", "2", "--temperatures",
            "0", "--max-length", "24", "--repetitions", "1",
            "--cost-repetitions", "2", "--out", out,
        ]
    )  # fmt: skip
    (row,) = rows
    assert row["gamma"] == 2 and 0.0 <= row["alpha"] <= 1.0
    assert row["tokens_per_target_call"] >= 1.0
    assert math.isfinite(row["measured_speedup"])
    assert 0.0 <= row["target_distinct_4grams"] <= 1.0
    with open(os.path.join(out, "results.json")) as f:
        assert "device" in json.load(f)


def test_the_library_never_imports_the_bench_package():
    # keras_specdec/bench/ (benchmark, profiling, demo) is not the library:
    # only the two command shims beside the core modules call into it.
    import ast

    import keras_specdec

    root = os.path.dirname(keras_specdec.__file__)
    shims = {"benchmark.py", "demo.py"}
    for name in sorted(os.listdir(root)):
        if not name.endswith(".py") or name in shims:
            continue
        with open(os.path.join(root, name)) as f:
            tree = ast.parse(f.read())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                modules = [node.module or ""]
                modules += [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                modules = [a.name for a in node.names]
            else:
                continue
            for module in modules:
                assert not module.startswith("keras_specdec.bench"), (name, module)
