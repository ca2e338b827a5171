"""The example scripts and the Colab notebook run offline.

- Each script's `--offline-pairs` path runs (tiny settings, in a subprocess);
  the T5 scripts also on a tiny random stand-in of the `ende` pair
  (`fake_pairs.py`), so they are tested before the real pair is shipped.
- Without data or presets, the online paths fail at once with a message that
  names the dataset / preset and how to get it.
- The notebook runs top to bottom with nbclient and KERAS_SPECDEC_OFFLINE=1,
  and (slow) once more with two host devices so that its sharding cell runs.
"""

import ast
import importlib.util
import os
import subprocess
import sys
import time

import pytest

import keras_specdec

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(ROOT, "examples")
NOTEBOOK = os.path.join(EXAMPLES, "speculative_decoding_tpu.ipynb")
ENDE_DIR = os.path.join(keras_specdec.pairs.PAIRS_DIR, "ende")
needs_ende = pytest.mark.skipif(
    not os.path.isdir(os.path.join(ENDE_DIR, "target")),
    reason="the shipped ende pair is not exported yet",
)
TINY = ["--max-length", "16", "--num-examples", "1", "--repetitions", "1"]


def run_script(script, *args, env=None, timeout=600):
    environment = dict(os.environ, KERAS_BACKEND="jax", **(env or {}))
    result = subprocess.run(
        [sys.executable, os.path.join(EXAMPLES, script), *args],
        capture_output=True,
        text=True,
        env=environment,
        timeout=timeout,
        cwd=ROOT,
    )
    return result


def assert_ran(result, greedy=True):
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    assert "acceptance rate (alpha):" in out
    assert "measured speedup:" in out
    if greedy:
        assert "identical outputs (greedy):  True" in out
    return out


def import_script(name):
    if EXAMPLES not in sys.path:
        sys.path.insert(0, EXAMPLES)
    spec = importlib.util.spec_from_file_location(
        name, os.path.join(EXAMPLES, f"{name}.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def fake_ende(tmp_path_factory):
    from fake_pairs import make_fake_ende

    # Named "ende" so that pairs.load restores its sequence length (64).
    return make_fake_ende(str(tmp_path_factory.mktemp("fake") / "ende"))


def test_pairs_load_seq2seq_pair_and_held_out_pairs(fake_ende):
    import keras_hub

    target, draft = keras_specdec.pairs.load(fake_ende)
    assert isinstance(target, keras_hub.models.Seq2SeqLM)
    assert isinstance(draft, keras_hub.models.Seq2SeqLM)
    assert target.preprocessor.encoder_sequence_length == 64
    rows = keras_specdec.pairs.held_out_pairs(fake_ende)
    assert rows[0] == ("The cat sits on the mat.", "Die Katze sitzt auf der Matte.")
    with pytest.raises(FileNotFoundError, match="validation"):
        keras_specdec.pairs.held_out_pairs(fake_ende, split="validation")


@pytest.mark.parametrize(
    "script, args, names",
    [
        (
            "t5_translation",
            ["--target", "/nonexistent/t5_large"],
            ["wmt14_translate/de-en", "tfds build", "--data-dir", "t5_large"],
        ),
        (
            "t5_summarization",
            ["--draft", "/nonexistent/t5_small"],
            ["cnn_dailymail", "tfds build", "t5_small"],
        ),
        (
            "gpt2_speculative",
            ["--target", "/nonexistent/gpt2_large", "--draft", "/nonexistent/b"],
            ["gpt2_large"],
        ),
    ],
)
def test_online_path_fails_fast_with_clear_message(
    script, args, names, tmp_path, capsys
):
    module = import_script(script)
    start = time.perf_counter()
    with pytest.raises(SystemExit) as exit_info:
        module.main([*args, "--data-dir", str(tmp_path)] if "t5" in script else args)
    assert time.perf_counter() - start < 30
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    for name in names:
        assert name in err
    assert "--offline-pairs" in err


def test_unreachable_hub_preset_message(monkeypatch, capsys):
    common = import_script("_common")
    monkeypatch.setattr(common, "_reachable", lambda host: (False, "test: no network"))
    monkeypatch.setenv("KAGGLEHUB_CACHE", "/nonexistent")
    with pytest.raises(SystemExit):
        common.check_all(presets=[("t5_small_multi", "T5Seq2SeqLM")])
    err = capsys.readouterr().err
    assert "'t5_small_multi' (kaggle://keras/t5/keras/t5_small_multi/" in err
    assert "www.kaggle.com is unreachable (test: no network)" in err
    assert "save_to_preset" in err and "local path" in err


def test_gpt2_example_offline_pairs():
    out = assert_ran(run_script("gpt2_speculative.py", "--offline-pairs", *TINY))
    assert "shipped pair 'code'" in out


def test_t5_translation_offline_on_stand_in_pair(fake_ende):
    result = run_script(
        "t5_translation.py", "--offline-pairs", "--pair", fake_ende, *TINY
    )
    out = assert_ran(result)
    assert "BLEU (sacrebleu):" in out
    # Keras' "... T5MultiHeadAttention ... will therefore destroy the mask"
    # UserWarning (harmless for T5) is filtered.
    assert "destroy the mask" not in result.stderr


@pytest.mark.slow
def test_t5_summarization_offline_on_stand_in_pair_sampled(fake_ende):
    result = run_script(
        "t5_summarization.py",
        "--offline-pairs",
        "--pair",
        fake_ende,
        "--temperature",
        "1.0",
        *TINY,
    )
    out = assert_ran(result, greedy=False)
    assert "STAND-IN task" in out and "ROUGE-L F1:" in out


@needs_ende
def test_t5_translation_offline_pairs_shipped_ende():
    out = assert_ran(run_script("t5_translation.py", "--offline-pairs", *TINY))
    assert "shipped pair 'ende'" in out


@needs_ende
@pytest.mark.slow
def test_t5_summarization_offline_pairs_shipped_ende():
    out = assert_ran(run_script("t5_summarization.py", "--offline-pairs", *TINY))
    assert "STAND-IN task" in out


def execute_notebook(extra_env=None):
    nbclient = pytest.importorskip("nbclient")
    nbformat = pytest.importorskip("nbformat")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    saved = dict(os.environ)
    os.environ.update({"KERAS_SPECDEC_OFFLINE": "1", "KERAS_BACKEND": "jax"})
    os.environ.update(extra_env or {})
    try:  # the kernel inherits this environment
        nbclient.NotebookClient(
            notebook,
            timeout=600,
            kernel_name="python3",
            resources={"metadata": {"path": ROOT}},
        ).execute()
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return "".join(
        output.get("text", "")
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.get("outputs", [])
    )


def test_notebook_runs_offline():  # 30-70 s on 2 CPU cores
    out = execute_notebook()
    assert "offline (shipped small pairs): True" in out
    assert "identical (greedy): True" in out
    assert "optimal gamma by Theorem 3.8:" in out
    assert "One device: skipping the sharding example." in out
    if os.path.isdir(os.path.join(ENDE_DIR, "target")):
        assert out.count("identical (greedy): True") == 2


@pytest.mark.slow
def test_notebook_sharding_cell_on_two_host_devices():
    out = execute_notebook({"XLA_FLAGS": "--xla_force_host_platform_device_count=2"})
    assert "NamedSharding" in out
    assert "same as unsharded greedy: True" in out


def test_rouge_l_is_keras_hub_rouge_l():
    pytest.importorskip("rouge_score")
    common = import_script("_common")
    hypotheses = ["The cat sat on the mat.", "a b c d e", ""]
    references = ["the cat is on the mat", "e d c b a", "nothing"]
    # LCS by hand on rouge_score's tokens (lower case, alphanumerics):
    # 5 of 6 words (F1 5/6), 1 of 5 (F1 1/5), nothing (0).
    expected = 100 * (5 / 6 + 1 / 5 + 0) / 3
    assert common.rouge_l(hypotheses, references) == pytest.approx(expected, 1e-5)
    # A fresh metric per call: scores do not accumulate.
    assert common.rouge_l(["x y"], ["x y"]) == pytest.approx(100.0)


def test_missing_metric_package_fails_before_loading_models(monkeypatch, capsys):
    common = import_script("_common")
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "rouge_score" else real_find_spec(name, *a),
    )
    with pytest.raises(SystemExit) as exit_info:
        common.check_all(packages=("rouge_score", "sacrebleu"))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "need rouge_score: `pip install rouge-score`" in err
    assert "--offline-pairs" not in err


SCRIPTS = os.path.join(ROOT, "scripts")
# scripts/ is grouped by purpose: data/, training/, comparison/.
SCRIPT_GROUPS = sorted(
    d for d in os.listdir(SCRIPTS) if os.path.isdir(os.path.join(SCRIPTS, d))
)
SCRIPTS_WITH_HELP = sorted(
    [
        os.path.join("examples", f)
        for f in os.listdir(EXAMPLES)
        # quickstart.py takes no options.
        if f.endswith(".py") and not f.startswith("_") and f != "quickstart.py"
    ]
    + [
        os.path.join("scripts", group, f)
        for group in SCRIPT_GROUPS
        for f in os.listdir(os.path.join(SCRIPTS, group))
        if f.endswith(".py") and f != "training_utils.py"
    ]
    + [
        os.path.join("keras_specdec", "demo.py"),
        os.path.join("keras_specdec", "benchmark.py"),
        os.path.join("keras_specdec", "bench", "__main__.py"),
    ]
)


def test_scripts_are_grouped_by_purpose():
    assert SCRIPT_GROUPS == ["comparison", "data", "training"]
    assert not [f for f in os.listdir(SCRIPTS) if f.endswith((".py", ".sh"))]


def _add_argument_calls(path):
    with open(os.path.join(ROOT, path)) as f:
        tree = ast.parse(f.read())
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "add_argument"
        ):
            yield node


@pytest.mark.parametrize(
    "path",
    [
        p
        for p in SCRIPTS_WITH_HELP
        # The benchmark's entry points hold no options: they call
        # keras_specdec/bench/cli.py (also in tests/benchmark_test.py).
        if p
        not in (
            "examples/benchmark.py",
            "keras_specdec/benchmark.py",
            "keras_specdec/bench/__main__.py",
        )
    ]
    + [
        os.path.join("keras_specdec", "bench", "cli.py"),
        os.path.join("keras_specdec", "bench", "demo.py"),
    ],
)
def test_every_option_has_help_in_sentences(path):
    # A static check (no import): every option documents itself in a
    # sentence, and the parser shows defaults.
    calls = list(_add_argument_calls(path))
    with open(os.path.join(ROOT, path)) as f:
        source = f.read()
    if path.startswith("examples/") and path != "examples/_common.py":
        assert "_common.argument_parser(__doc__)" in source
    elif calls:
        # Defaults shown: directly, or through scripts/training/training_utils.
        assert (
            "ArgumentDefaultsHelpFormatter" in source
            or "argument_parser(__doc__)" in source
        )
    for call in calls:
        option = ast.literal_eval(call.args[0]) if call.args else "?"
        helps = [k.value for k in call.keywords if k.arg == "help"]
        assert helps, f"{path}: {option} has no help"
        parts = helps[0].values if isinstance(helps[0], ast.JoinedStr) else helps
        text = "".join(
            part.value if isinstance(part, ast.Constant) else "X" for part in parts
        )
        assert text[:1].isupper() and text.rstrip().endswith("."), (path, option, text)


@pytest.mark.slow
@pytest.mark.parametrize("path", SCRIPTS_WITH_HELP)
def test_help_runs(path):  # each imports Keras: ~10 s apiece
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, path), "--help"],
        capture_output=True,
        text=True,
        env=dict(os.environ, KERAS_BACKEND="jax", PYTHONPATH=ROOT),
        timeout=300,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "usage:" in result.stdout


@pytest.mark.slow  # loads and compiles the shipped pair twice (~1-2 min)
def test_demo_sampled_times_the_same_work_without_warnings(capsys):
    import warnings

    from keras_specdec import demo

    with warnings.catch_warnings():
        # e.g. numpy's "Mean of empty slice" from a median of no timings.
        warnings.simplefilter("error", RuntimeWarning)
        plain, spec, stats = demo.main(
            [
                "--sampler",
                "random",
                "--prompt",
                "def add(a, b):\n",
                "--max-length",
                "24",
                "--repetitions",
                "1",
            ]
        )
    out = capsys.readouterr().out
    assert "timed work:               fixed" in out and "stop_token_ids=None" in out
    # Stop tokens off: the timed speculative call decided every position from
    # the prompt (with its start token) to --max-length, whatever it sampled;
    # the target alone, timed the same way, does the same work.
    target, _ = keras_specdec.pairs.load("code")
    prompt_tokens = len(target.preprocessor.tokenizer("def add(a, b):\n")) + 1
    assert stats["emitted_tokens"] == 24 - prompt_tokens
    assert plain.startswith("def add(a, b):") and spec.startswith("def add(a, b):")


def test_quickstart_help_exits_before_loading_models():
    # `--help` used to run the whole generation (three compiles).
    check = (
        "import runpy, sys\n"
        "sys.argv = ['quickstart.py', '--help']\n"
        "try:\n"
        f"    runpy.run_path({os.path.join(EXAMPLES, 'quickstart.py')!r}, "
        "run_name='__main__')\n"
        "except SystemExit as exit:\n"
        "    print('exit', exit.code)\n"
        "print('keras_hub imported:', 'keras_hub' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", check], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "usage: quickstart.py" in result.stdout
    assert "exit 0" in result.stdout
    assert "keras_hub imported: False" in result.stdout
