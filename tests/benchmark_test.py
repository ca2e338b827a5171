"""`keras_specdec.benchmark` end to end on a tiny random pair (offline)."""

import json
import math
import os

import pytest
from fake_pairs import make_fake_ende

from keras_specdec import benchmark


@pytest.fixture(scope="module")
def fake_ende(tmp_path_factory):
    # Named "ende" so that pairs.load restores its sequence length (64).
    return make_fake_ende(str(tmp_path_factory.mktemp("fake") / "ende"))


def test_benchmark_writes_table_2_3_and_adaptive_rows(fake_ende, tmp_path):
    out = str(tmp_path / "bench")
    rows = benchmark.main(
        [
            "--pair", fake_ende, "--gammas", "1", "2", "--temperatures", "0", "1",
            "--schedules", "auto", "--model-free-drafts", "prompt_lookup",
            "--model-free-gammas", "2", "--max-length", "12", "--num-prompts",
            "2", "--repetitions", "1", "--out", out,
        ]
    )  # fmt: skip
    # Per temperature: gammas 1 and 2, auto, prompt lookup at gamma 2.
    assert len(rows) == 8
    assert [r["gamma"] for r in rows[:4]] == [1, 2, "auto", 2]
    for r in rows:
        assert 0.0 <= r["alpha"] <= 1.0
        assert r["tokens_per_target_call"] >= 1.0
        for key in ("measured_speedup", "predicted_speedup", "efficiency", "c"):
            assert math.isfinite(r[key]) and r[key] >= 0.0
        if not isinstance(r["gamma"], str) and r["alpha"] < 1.0:
            # Theorem 3.8 at the row's alpha, gamma and c.
            a, g, c = r["alpha"], r["gamma"], r["c"]
            expected = (1 - a ** (g + 1)) / ((1 - a) * (g * c + 1))
            assert r["predicted_speedup"] == pytest.approx(expected)
        assert 0.0 <= r["target_distinct_4grams"] <= 1.0
    with open(os.path.join(out, "results.json")) as f:
        assert len(json.load(f)["rows"]) == 8
    with open(os.path.join(out, "results.md")) as f:
        markdown = f.read()
    assert "Table 3 analogue" in markdown
    assert "Adaptive gamma vs the best fixed gamma" in markdown
    assert "distinct 4-gram ratio" in markdown
    assert any(name.endswith(".png") for name in os.listdir(out))
