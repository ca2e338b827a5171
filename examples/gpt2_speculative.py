"""A causal LM preset pair: target alone vs speculative decoding.

Default: GPT-2 large (774 M) as target, GPT-2 base (124 M) as draft; any
KerasHub causal presets sharing a vocabulary work, e.g.
--target gemma2_instruct_9b_en --draft gemma2_instruct_2b_en. Batch 1,
timing after a warm-up pass, median of --repetitions passes over the
prompts; alpha from the sampler's counters; for greedy decoding the two
outputs must be identical.

    python examples/gpt2_speculative.py --prompt "The meaning of life is"
    python examples/gpt2_speculative.py --temperature 0.8 --top-p 0.9 --gamma 5
    # no network: the code pair shipped with keras_specdec
    python examples/gpt2_speculative.py --offline-pairs

Offline: when a preset cannot be downloaded the script stops at once and
says how to get it (a preset saved with `save_to_preset` and its local path).
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("KERAS_BACKEND", "jax")

import _common  # noqa: E402

# Short code openings for the shipped code pair (--offline-pairs).
CODE_PROMPTS = [
    "def binary_search(items, value):\n    ",
    "class LRUCache:\n    def __init__(self, capacity):\n        ",
    "import os\n\n\ndef read_lines(path):\n    ",
    "def parse_args(argv=None):\n    parser = argparse.ArgumentParser(",
]
DEFAULT_PROMPTS = [
    "The history of the printing press",
    "In a shocking finding, scientists discovered",
    "The best way to learn a new language is",
]


def main(argv=None):
    parser = _common.argument_parser(__doc__)
    _common.add_common_flags(parser, "gpt2_large_en", "gpt2_base_en", 96)
    parser.add_argument(
        "--prompt",
        action="append",
        default=None,
        help="A prompt (repeat the flag for several); None means the built-in prompts.",
    )
    args = parser.parse_args(argv)

    if args.offline_pairs:
        import keras_specdec

        name = args.pair or "code"
        try:
            keras_specdec.pairs.path(name, "target")
        except ValueError as error:
            _common.fail([f"- --offline-pairs: {error}"], offline_hint=False)
        target, draft = keras_specdec.pairs.load(name)
        prompts = args.prompt or CODE_PROMPTS
        source = f"shipped pair {name!r}"
    else:
        import keras_hub

        _common.check_all(presets=[(args.target, "CausalLM"), (args.draft, "CausalLM")])
        target = keras_hub.models.CausalLM.from_preset(args.target)
        draft = keras_hub.models.CausalLM.from_preset(args.draft)
        prompts = args.prompt or DEFAULT_PROMPTS
        source = f"{args.target} with draft {args.draft}"
    prompts = prompts[: args.num_examples]

    result = _common.compare(target, draft, prompts, args)
    _common.report(
        result,
        f"{source}, {len(prompts)} prompts, gamma {args.gamma}, "
        f"temperature {args.temperature}",
        sources=prompts,
    )
    return result


if __name__ == "__main__":
    main()
