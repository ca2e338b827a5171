"""The shipped model pair loads offline and the quickstart runs."""

import keras_hub
import pytest

import keras_specdec
from keras_specdec import demo

pytestmark = pytest.mark.skipif(
    "code" not in keras_specdec.pairs.available(), reason="no shipped pair"
)


def test_shipped_pair_loads_with_from_preset():
    target = keras_hub.models.CausalLM.from_preset(
        keras_specdec.pairs.path("code", "target")
    )
    draft = keras_hub.models.CausalLM.from_preset(
        keras_specdec.pairs.path("code", "draft")
    )
    assert target.backbone.vocabulary_size == draft.backbone.vocabulary_size
    assert draft.count_params() * 4 < target.count_params()
    # The tokenizer pads with id 0 and ends with a different id.
    assert target.preprocessor.tokenizer.end_token_id != 0
    summary = keras_specdec.pairs.training_summary("code")
    assert summary["target"]["last"]["tokens"] > 0
    with pytest.raises(ValueError, match="available"):
        keras_specdec.pairs.path("nope", "target")


def test_quickstart_greedy_is_identical(capsys):
    plain, spec, stats = demo.main(["--max-length", "96", "--repetitions", "1"])
    assert plain == spec
    assert stats["emitted_tokens"] > 0
    out = capsys.readouterr().out
    assert "identical outputs:        True" in out
    assert "measured speedup" in out
    # A prompt that fills max_length is refused before generating.
    with pytest.raises(SystemExit):
        demo.main(["--max-length", "16", "--repetitions", "1"])
    assert "leaves nothing to" in capsys.readouterr().err


def test_examples_quickstart_runs(capsys):
    import runpy

    path = __file__.replace("tests/pairs_test.py", "examples/quickstart.py")
    runpy.run_path(path, run_name="__main__")
    out = capsys.readouterr().out
    assert "identical to greedy: True" in out


def test_benchmark_prompts():
    code = keras_specdec.pairs.benchmark_prompts("code")
    assert len(code) >= 8 and all(p.lstrip().startswith("def ") for p in code)
    ende = keras_specdec.pairs.benchmark_prompts("ende")
    assert len(ende) > 100 and all(len(s.split()) >= 8 for s in ende)


def test_shipped_code_head_loads_and_drafts():
    from keras_specdec import heads, models

    target, head = keras_specdec.pairs.load("code", draft="head")
    assert isinstance(head, heads.DraftHead)
    assert isinstance(models.adapt(head), heads.HeadAdapter)
    assert head.vocabulary_size == target.backbone.vocabulary_size
    summary = keras_specdec.pairs.training_summary("code")["head"]
    assert summary["alpha_step1_after"] > summary["alpha_step1_before"]
    with pytest.raises(ValueError, match="no draft head"):
        keras_specdec.pairs.load("ende", draft="head")
    with pytest.raises(ValueError, match="'model' or 'head'"):
        keras_specdec.pairs.load("code", draft="nope")
