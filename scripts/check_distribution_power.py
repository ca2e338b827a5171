"""Print TV distances of the sequence-level distribution test cases, and
show the test's power by injecting known faults.

    python scripts/check_distribution_power.py none random_t0.8,top_k3_t1.3,top_p0.7_t0.9
    python scripts/check_distribution_power.py residual_is_p top_k3_t1.3
    python scripts/check_distribution_power.py ignore_topk top_k3_t1.3
    python scripts/check_distribution_power.py argmax_draft top_k3_t1.3
"""

# ruff: noqa: E402, E501

import os
import sys

os.environ["KERAS_BACKEND"] = "jax"
sys.path[:0] = [
    os.path.join(os.path.dirname(__file__), "..", "tests"),
    os.path.join(os.path.dirname(__file__), ".."),
]
import distribution_test as D
import numpy as np
from keras import ops
from tiny_models import noisy_copy

import keras_specdec
from keras_specdec import rejection


def run(base_name, ragged, label):
    target = D.tiny_gpt2(seed=1)
    draft = noisy_copy(target, noise=1.0, seed=2)
    prompts = [[1, 2, 3]] + ([[4, 0, 2, 1]] if ragged else [])
    L = 7
    ids = np.zeros((len(prompts), L), "int32")
    m = np.zeros_like(ids, bool)
    for r, p in enumerate(prompts):
        ids[r, : len(p)] = p
        m[r, : len(p)] = True
    base = D.BASE_SAMPLERS[base_name]()
    s = keras_specdec.SpeculativeSampler(draft, 3, base_sampler=base)
    samples = D.sample_many(target, s, ids, m, D.NUM_SAMPLES, 1234)
    # acceptance from a normal generate
    s2 = keras_specdec.SpeculativeSampler(
        draft, 3, base_sampler=D.BASE_SAMPLERS[base_name](), seed=0
    )
    target.compile(sampler=s2)
    for _ in range(20):
        target.generate({"token_ids": ids, "padding_mask": m}, stop_token_ids=None)
    for r, p in enumerate(prompts):
        exact = D.exact_joint(target, np.array(p), L - len(p), base)
        tv, fm, fs, counts = D.tv_and_noise_floor(samples[:, r, len(p) :], exact)
        print(
            f"{label:12s} {base_name:14s} ragged={ragged} row{r}: TV={tv:.4f} floor={fm:.4f}+-{fs:.4f} threshold={fm + 4 * fs:.4f} zero-prob samples={counts[exact == 0].sum()} alpha~{s2.stats()['acceptance_rate']:.2f}",
            flush=True,
        )


def main():
    import argparse

    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "mode",
        choices=["none", "residual_is_p", "ignore_topk", "argmax_draft"],
        help="The fault to inject: none (the real sampler), residual_is_p "
        "(resample from p instead of the residual), ignore_topk (q and p "
        "without the base sampler's top-k/top-p) or argmax_draft (the draft "
        "proposes its argmax instead of a sample).",
    )
    p.add_argument(
        "bases",
        help="Comma-separated base samplers of tests/distribution_test.py: "
        f"any of {', '.join(D.BASE_SAMPLERS)}.",
    )
    args = p.parse_args()
    mode = args.mode
    if mode == "residual_is_p":
        rejection.residual_distribution = lambda p, q: p
    elif mode == "ignore_topk":
        rejection.adjusted_probabilities = lambda logits, base: (
            base.compute_probabilities(logits)
        )
    elif mode == "argmax_draft":
        orig = rejection.sample_categorical

        def fake(q, seed):
            if len(ops.shape(q)) == 2 and ops.shape(q)[0] <= 2:
                return ops.argmax(q, -1)
            return orig(q, seed)

        rejection.sample_categorical = fake
    for b in args.bases.split(","):
        for rg in (False, True):
            run(b, rg, mode)


if __name__ == "__main__":
    main()
