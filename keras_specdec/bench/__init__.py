"""Benchmarking, profiling and the demo of keras_specdec (not the library).

One entry point, `python -m keras_specdec.bench` (`--help` lists every
option; `keras_specdec.bench.cli`), benchmarks speculative decoding the way
the paper's Table 2 does:

    python -m keras_specdec.bench --pair code --gammas 1 2 3 4 6 8 \\
        --temperatures 0 1 --schedules auto heuristic --out benchmarks/code

For each temperature (0 = greedy) and batch size it times, in one run on this
machine and after warm-up, `generate()` of the target alone with the base
sampler and with `SpeculativeSampler` for each gamma, fixed work per call
(`stop_token_ids=None`: every call generates up to `--max-length`), on the
pair's held-out prompts. All configurations of a temperature are compiled
first (one target instance each) and then timed in turn within every one of
`--repetitions` rounds, so drift of the machine's speed moves baseline and
speculative timings together; medians per call (`run`).

Each row reports: measured alpha, measured c (draft step / target step) and
v (verify pass of gamma + 1 tokens / target step), Theorem 3.8's predicted
improvement, the measured improvement and their ratio (implementation
efficiency), the first-call (compile) time, and where a round's time goes
(draft steps, verify pass, everything else; `report`). Writes `results.json`,
`results.md` and PNG plots (`plots`: speedup and alpha against gamma,
measured points over the theorem's curves; speedup against batch size).

Batches (`--batch-sizes 1 4 16`): batch B uses ceil(N / B) batches of the N
held-out prompts (at least one); row r of batch j holds prompt
(j * B + r) mod N, so a batch larger than N cycles through the prompts.
Causal prompts are cut to their first `--prompt-tokens` tokens.

Also (issue rows of the paper's Table 3 and of adaptive gamma):
- `--schedules auto heuristic`: `num_speculative_tokens="auto"` with the
  measured c and verify costs v (Theorem 3.8 schedule) and HF's heuristic
  schedule, both with `max_speculative_tokens = max(--gammas)`, next to the
  fixed gammas; their "predicted" columns are at the gamma that Theorem 3.8
  with the measured v prefers for the measured alpha.
- `--model-free-drafts unigram bigram prompt_lookup` at `--model-free-gammas`:
  unigram and bigram drafts fitted on `--fit-files` Python standard library
  files (tokenized with the pair's tokenizer; c taken as 0), and prompt lookup.
- `--profile CALLS`: where a round's time goes inside the real program, from
  a profiler trace (`profiling.trace_phase_seconds`: each XLA op's time goes
  to the round phase whose `jax.named_scope` emitted it, see
  `keras_specdec.phases`).
- Without TensorFlow (GPU machines with JAX and Keras only): write the
  prompts as token ids where the tokenizer runs, then time on token ids,
  optionally with freshly trained backbone weights:

      python -m keras_specdec.bench --pair code --write-prompts prompts.json
      python -m keras_specdec.bench --pair code --prompts prompts.json \\
          --target-weights ck/code_target/best.weights.h5 \\
          --draft-weights ck/code_draft/best.weights.h5 --out bench_gpu

The demo (`python -m keras_specdec.demo`, `keras_specdec.bench.demo`) times
one prompt with the target alone and with speculative decoding.

The library never imports this package.
"""

import os

os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # tf.text's C++ start-up logs
