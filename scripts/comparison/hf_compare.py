"""keras_specdec next to Hugging Face transformers on the same weights and prompts.

The shipped causal pair (`code`, KerasHub GPT-2 backbones) converts exactly to
`transformers.GPT2LMHeadModel`. This script exports both models and the
benchmark's prompts (token ids, so both libraries decode the same ids), times
each library's plain greedy decoding, draft-model speculative decoding and
prompt lookup on every prompt, and writes one table of speedups, each over
the same library's plain greedy decoding (batch 1, fixed work: every call
generates exactly `max_length - prompt length` tokens, no stop token).

The two libraries live in different environments (JAX vs PyTorch), so the
steps run in separate processes; each process interleaves its own
configurations within every repetition (ratios in one run), and `all` runs
the HF and keras_specdec processes in turn `--rounds` times:

    python scripts/comparison/hf_compare.py export --out /tmp/hfc  # this venv
    HF_PYTHON=/path/to/torch-venv/bin/python \\
        python scripts/comparison/hf_compare.py all --out /tmp/hfc  # both, in turn
    python scripts/comparison/hf_compare.py report --out /tmp/hfc

The HF environment needs `torch`, `transformers` and `numpy` only. Greedy
outputs are compared token by token between the libraries (same weights and
ids; float32 on CPU, so an exact tie could in principle break differently).
"""

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

GAMMAS = (4, 8)


# --------------------------------------------------------------------------
# export (keras_specdec environment)
# --------------------------------------------------------------------------


def gpt2_state_dict(backbone):
    """A KerasHub `GPT2Backbone`'s weights as `GPT2LMHeadModel` tensors
    (numpy; HF's Conv1D kernels are (in, out), as Keras' Dense kernels)."""
    w = {v.path: v.numpy() for v in backbone.weights}
    hidden = w["token_embedding/embeddings"].shape[1]
    sd = {
        "transformer.wte.weight": w["token_embedding/embeddings"],
        "transformer.wpe.weight": w["position_embedding/embeddings"],
        "transformer.ln_f.weight": w["layer_norm/gamma"],
        "transformer.ln_f.bias": w["layer_norm/beta"],
    }
    for i in range(backbone.num_layers):
        k, h = f"transformer_layer_{i}/", f"transformer.h.{i}."
        qkv = [w[f"{k}self_attention/{n}/kernel"] for n in ("query", "key", "value")]
        qkv_bias = [w[f"{k}self_attention/{n}/bias"] for n in ("query", "key", "value")]
        sd[h + "attn.c_attn.weight"] = np.concatenate(
            [x.reshape(hidden, -1) for x in qkv], axis=1
        )  # (hidden, 3 * hidden)
        sd[h + "attn.c_attn.bias"] = np.concatenate([b.ravel() for b in qkv_bias])
        out = w[f"{k}self_attention/attention_output/kernel"]  # (heads, dim, hidden)
        sd[h + "attn.c_proj.weight"] = out.reshape(-1, hidden)
        sd[h + "attn.c_proj.bias"] = w[f"{k}self_attention/attention_output/bias"]
        sd[h + "ln_1.weight"] = w[f"{k}self_attention_layer_norm/gamma"]
        sd[h + "ln_1.bias"] = w[f"{k}self_attention_layer_norm/beta"]
        sd[h + "ln_2.weight"] = w[f"{k}feedforward_layer_norm/gamma"]
        sd[h + "ln_2.bias"] = w[f"{k}feedforward_layer_norm/beta"]
        sd[h + "mlp.c_fc.weight"] = w[f"{k}feedforward_intermediate_dense/kernel"]
        sd[h + "mlp.c_fc.bias"] = w[f"{k}feedforward_intermediate_dense/bias"]
        sd[h + "mlp.c_proj.weight"] = w[f"{k}feedforward_output_dense/kernel"]
        sd[h + "mlp.c_proj.bias"] = w[f"{k}feedforward_output_dense/bias"]
    config = {
        "vocab_size": backbone.vocabulary_size,
        "n_positions": backbone.max_sequence_length,
        "n_embd": hidden,
        "n_layer": backbone.num_layers,
        "n_head": backbone.num_heads,
        "n_inner": backbone.intermediate_dim,
        "activation_function": "gelu_new",  # KerasHub GPT-2: tanh-approximate
        "layer_norm_epsilon": 1e-5,
        "resid_pdrop": 0.0,
        "embd_pdrop": 0.0,
        "attn_pdrop": 0.0,
    }
    return sd, config


def prompt_ids(target, args):
    """The benchmark's prompts as the target's preprocessor tokenizes them
    for `generate()` (start token included): one list of ids per prompt."""
    import keras_specdec
    from keras_specdec.bench.run import truncate_prompts

    prompts = keras_specdec.pairs.benchmark_prompts(args.pair)[: args.num_prompts]
    prompts = truncate_prompts(target, prompts, args.prompt_tokens)
    ids = []
    for prompt in prompts:
        x = target.preprocessor.generate_preprocess(
            [prompt], sequence_length=args.max_length
        )
        mask = np.asarray(x["padding_mask"])[0].astype(bool)
        ids.append([int(t) for t in np.asarray(x["token_ids"])[0][mask]])
    return prompts, ids


def export(args):
    import keras_specdec

    target, draft = keras_specdec.pairs.load(args.pair)
    os.makedirs(args.out, exist_ok=True)
    for name, model in (("target", target), ("draft", draft)):
        sd, config = gpt2_state_dict(model.backbone)
        tokenizer = target.preprocessor.tokenizer
        config["bos_token_id"] = int(tokenizer.start_token_id)
        config["eos_token_id"] = int(tokenizer.end_token_id)  # min_new_tokens: unused
        np.savez(os.path.join(args.out, f"{name}.npz"), **sd)
        with open(os.path.join(args.out, f"{name}_config.json"), "w") as f:
            json.dump(config, f)
    prompts, ids = prompt_ids(target, args)
    # Keras logits of the first prompt: the HF step checks its conversion.
    x = np.array([ids[0]])
    logits = target.backbone.token_embedding(
        target.backbone({"token_ids": x, "padding_mask": np.ones_like(x)}),
        reverse=True,
    )
    np.save(os.path.join(args.out, "check_logits.npy"), np.asarray(logits)[0])
    with open(os.path.join(args.out, "prompts.json"), "w") as f:
        json.dump(
            {
                "pair": args.pair,
                "max_length": args.max_length,
                "prompts": prompts,
                "ids": ids,
            },
            f,
        )
    print(f"exported {len(ids)} prompts and the {args.pair!r} pair to {args.out}")


# --------------------------------------------------------------------------
# hf (PyTorch environment: torch, transformers, numpy)
# --------------------------------------------------------------------------


def hf_models(out):
    import torch
    import transformers

    models = {}
    for name in ("target", "draft"):
        with open(os.path.join(out, f"{name}_config.json")) as f:
            config = transformers.GPT2Config(**json.load(f))
        model = transformers.GPT2LMHeadModel(config).eval()
        arrays = np.load(os.path.join(out, f"{name}.npz"))
        state = {k: torch.from_numpy(arrays[k]) for k in arrays.files}
        missing, unexpected = model.load_state_dict(state, strict=False)
        # lm_head.weight is tied to wte; nothing else may be missing.
        assert not unexpected and set(missing) <= {"lm_head.weight"}, (
            missing,
            unexpected,
        )
        model.tie_weights()
        models[name] = model
    return models


def run_hf(args):
    import torch

    with open(os.path.join(args.out, "prompts.json")) as f:
        data = json.load(f)
    models = hf_models(args.out)
    target, draft = models["target"], models["draft"]
    with torch.inference_mode():
        ids0 = torch.tensor([data["ids"][0]])
        diff = np.abs(
            target(ids0).logits[0].numpy()
            - np.load(os.path.join(args.out, "check_logits.npy"))
        ).max()
    print(f"HF vs Keras logits, first prompt: max |difference| {diff:.2e}")
    assert diff < 1e-3, "the converted HF model does not match the Keras model"
    configs = {"plain": {}}
    for g in GAMMAS:
        configs[f"draft model gamma={g}"] = {
            "assistant_model": draft,
            "num_assistant_tokens": g,
            "num_assistant_tokens_schedule": "constant",
            "assistant_confidence_threshold": 0.0,
        }
        configs[f"prompt lookup gamma={g}"] = {"prompt_lookup_num_tokens": g}

    def call(kwargs, ids):
        new = data["max_length"] - len(ids)
        x = torch.tensor([ids])
        return target.generate(
            x,
            attention_mask=torch.ones_like(x),
            do_sample=False,
            max_new_tokens=new,
            min_new_tokens=new,
            pad_token_id=0,
            **kwargs,
        )[0].tolist()

    with torch.inference_mode():
        tokens = {}
        for name, kwargs in configs.items():  # warm-up, and the outputs
            tokens[name] = [call(kwargs, ids) for ids in data["ids"]]
        seconds = time_interleaved(configs, data["ids"], call, args.repetitions)
    return {"library": "transformers", "seconds": seconds, "tokens": tokens}


def time_interleaved(configs, all_ids, call, repetitions):
    """Seconds of every call of each configuration, all configurations in
    turn within each repetition (a different one first each time)."""
    names = list(configs)
    seconds = {name: [] for name in names}
    for repetition in range(repetitions):
        for k in range(len(names)):
            name = names[(k + repetition) % len(names)]
            for x in all_ids:
                start = time.perf_counter()
                call(configs[name], x)
                seconds[name].append(time.perf_counter() - start)
    return seconds


# --------------------------------------------------------------------------
# ours (keras_specdec environment)
# --------------------------------------------------------------------------


def run_ours(args):
    import keras_specdec

    with open(os.path.join(args.out, "prompts.json")) as f:
        data = json.load(f)
    max_length = data["max_length"]
    # The exported ids, padded to max_length: both libraries decode the same
    # ids, and neither call pays for tokenizing.
    inputs = []
    for ids in data["ids"]:
        token_ids = np.zeros((1, max_length), "int32")
        token_ids[0, : len(ids)] = ids
        padding_mask = np.arange(max_length)[None] < len(ids)  # (1, max_length)
        inputs.append({"token_ids": token_ids, "padding_mask": padding_mask})
    target, draft = keras_specdec.pairs.load(data["pair"])
    vocabulary_size = target.backbone.vocabulary_size
    samplers = {"plain": "greedy"}
    for g in GAMMAS:
        samplers[f"draft model gamma={g}"] = keras_specdec.SpeculativeSampler(draft, g)
        samplers[f"prompt lookup gamma={g}"] = keras_specdec.SpeculativeSampler(
            keras_specdec.PromptLookupDraft(vocabulary_size, max_ngram=3), g
        )
    models = {}
    for name, sampler in samplers.items():  # one model per sampler: one compile
        model = target if not models else keras_specdec.pairs.load(data["pair"])[0]
        model.preprocessor = None  # token ids in, token ids out
        model.compile(sampler=sampler)
        models[name] = model

    def call(model, x):
        return model.generate(x, stop_token_ids=None)

    tokens = {}
    for name, model in models.items():  # compile, warm-up, and the outputs
        tokens[name] = [
            [int(t) for t in np.asarray(call(model, x)["token_ids"])[0]] for x in inputs
        ]
        if hasattr(model.sampler, "reset_stats"):
            model.sampler.reset_stats()
    seconds = time_interleaved(models, inputs, call, args.repetitions)
    stats = {
        name: m.sampler.stats()
        for name, m in models.items()
        if hasattr(m.sampler, "stats")
    }
    return {
        "library": "keras_specdec",
        "seconds": seconds,
        "tokens": tokens,
        "stats": stats,
    }


# --------------------------------------------------------------------------
# all / report
# --------------------------------------------------------------------------


def run_all(args):
    hf_python = os.environ.get("HF_PYTHON")
    if not hf_python:
        sys.exit("Set HF_PYTHON to a Python with torch and transformers installed.")
    # Rounds already in --out are kept: a later `all` adds rounds after them.
    done = [f for f in os.listdir(args.out) if f.startswith("result_hf_")]
    for r in range(len(done), len(done) + args.rounds):
        for step, python in (("hf", hf_python), ("ours", sys.executable)):
            cmd = [
                python, __file__, step, "--out", args.out,
                "--repetitions", str(args.repetitions), "--round", str(r),
            ]  # fmt: skip
            print("+", " ".join(cmd), flush=True)
            subprocess.run(cmd, check=True)


def pass_totals(seconds, num_prompts):
    """Seconds of each timed pass over the prompts (one call per prompt)."""
    return [
        sum(seconds[i : i + num_prompts]) for i in range(0, len(seconds), num_prompts)
    ]


def report(args):
    import statistics

    results = {"transformers": [], "keras_specdec": []}
    for name in sorted(os.listdir(args.out)):
        if name.startswith("result_") and name.endswith(".json"):
            with open(os.path.join(args.out, name)) as f:
                r = json.load(f)
            results[r["library"]].append(r)
    with open(os.path.join(args.out, "prompts.json")) as f:
        data = json.load(f)
    new_tokens = sum(data["max_length"] - len(ids) for ids in data["ids"])
    lines = [
        "Measured with `python scripts/comparison/hf_compare.py export --out "
        "OUT`, `HF_PYTHON=... python scripts/comparison/hf_compare.py all "
        f"--out OUT --rounds {len(results['transformers'])} --repetitions 3`, "
        "`python scripts/comparison/hf_compare.py report --out OUT`.",
        "",
        f"Pair {data['pair']!r}, {len(data['ids'])} prompts, batch 1, "
        f"{new_tokens} new tokens in all (no stop token), greedy. Speedup = "
        "the library's own plain greedy time / its time for the configuration "
        "(sum over prompts, median over repetitions); one column per round "
        "(each round: one transformers process, then one keras_specdec "
        "process, each interleaving its configurations).",
        "",
        "| configuration | transformers | keras_specdec | ours / theirs |",
        "|---|---|---|---|",
    ]
    names = (
        list(results["keras_specdec"][0]["seconds"]) if results["keras_specdec"] else []
    )

    def speedups(library, name):
        """Per round: plain greedy time / `name`'s time (medians of passes)."""
        n = len(data["ids"])
        return [
            statistics.median(pass_totals(r["seconds"]["plain"], n))
            / statistics.median(pass_totals(r["seconds"][name], n))
            for r in results[library]
        ]

    for name in names:
        theirs, ours = speedups("transformers", name), speedups("keras_specdec", name)
        fmt = lambda xs: " / ".join(f"{x:.2f}x" for x in xs)  # noqa: E731
        ratio = " / ".join(f"{o / t:.2f}" for o, t in zip(ours, theirs))
        lines.append(f"| {name} | {fmt(theirs)} | {fmt(ours)} | {ratio} |")
    plain_ms = {
        lib: [1000 * statistics.median(r["seconds"]["plain"]) for r in results[lib]]
        for lib in results
    }
    lines += [
        "",
        "Plain greedy, median ms per call: "
        + "; ".join(
            f"{lib} " + " / ".join(f"{x:.0f}" for x in xs)
            for lib, xs in plain_ms.items()
        ),
    ]
    if results["transformers"] and results["keras_specdec"]:
        hf_tokens = results["transformers"][0]["tokens"]["plain"]
        our_tokens = results["keras_specdec"][0]["tokens"]["plain"]
        same = sum(a == b[: len(a)] for a, b in zip(hf_tokens, our_tokens))
        lines.append(
            f"Greedy outputs identical between the libraries: {same} of "
            f"{len(hf_tokens)} prompts."
        )
        for lib in results:
            t = results[lib][0]["tokens"]
            ok = all(t[name] == t["plain"] for name in t)
            lines.append(
                f"{lib}: every configuration's tokens = its plain greedy: {ok}"
            )
        stats = results["keras_specdec"][0].get("stats", {})
        for name, st in stats.items():
            lines.append(
                f"keras_specdec {name}: acceptance rate "
                f"{st['acceptance_rate']:.3f}, tokens per target call "
                f"{st['tokens_per_target_call']:.2f}"
            )
    text = "\n".join(lines) + "\n"
    with open(os.path.join(args.out, "results.md"), "w") as f:
        f.write(text)
    print(text)


def main(argv=None):
    class Formatter(
        argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter
    ):
        pass

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=Formatter)
    parser.add_argument(
        "step",
        choices=["export", "hf", "ours", "all", "report"],
        help="Export the pair and prompts, time one library (hf / ours), "
        "alternate both (all), or write the table (report).",
    )
    parser.add_argument("--out", required=True, help="Folder for exports and results.")
    parser.add_argument("--pair", default="code", help="Shipped causal pair to export.")
    parser.add_argument(
        "--num-prompts", type=int, default=9, help="Held-out prompts to export."
    )
    parser.add_argument(
        "--prompt-tokens", type=int, default=64, help="Prompts cut to this many tokens."
    )
    parser.add_argument(
        "--max-length", type=int, default=128, help="Prompt plus new tokens per call."
    )
    parser.add_argument(
        "--repetitions", type=int, default=3, help="Timed passes over the prompts."
    )
    parser.add_argument(
        "--rounds", type=int, default=2, help="With all: turns of HF, then ours."
    )
    parser.add_argument(
        "--round", type=int, default=0, help="Round number in the result's file name."
    )
    args = parser.parse_args(argv)
    if args.step == "export":
        return export(args)
    if args.step == "all":
        return run_all(args)
    if args.step == "report":
        return report(args)
    result = run_hf(args) if args.step == "hf" else run_ours(args)
    path = os.path.join(args.out, f"result_{args.step}_{args.round}.json")
    with open(path, "w") as f:
        json.dump(result, f)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
