"""The benchmark's rows and tables: Theorem 3.8 next to the measurements.

`result_row` turns one configuration's timings into a row (alpha, c, v, the
predicted and measured speedups, where a round's time goes, the profiled
breakdown of `--profile`); `to_markdown` writes the tables of results.md.
"""

import math


def result_row(
    *,
    pair,
    batch_size,
    max_length,
    draft,
    temperature,
    gamma,
    gammas,
    stats,
    model_draft,
    target_seconds,
    draft_seconds,
    base,
    speculative,
):
    """One Table-2 row: measured alpha and speedup next to Theorem 3.8's
    prediction, with and without the measured verify cost, and where a
    round's time goes.

    `target_seconds` / `draft_seconds`: `{chunk: seconds}` of one call inside
    a compiled loop at this batch size. `base` / `speculative`: dicts of
    `median` and `mean` seconds per call, `first_call` seconds, `fixed`
    seconds of a call that decodes nothing (prefill, dispatch, pre- and
    post-processing), and `steps` (plain) or `rounds` (speculative) per call.
    Fixed gammas use their own c and v; schedules ("auto", "heuristic") are
    compared with the theorem at the fixed gamma it prefers for their alpha.
    """
    from keras_specdec import analysis

    alpha = stats["acceptance_rate"]
    step = target_seconds[1]
    c = draft_seconds[1] / step if model_draft else 0.0

    def v(g):
        return target_seconds[g + 1] / step

    if math.isnan(alpha):
        # No proposal judged (prompt lookup without a match): no alpha, so
        # no prediction (the theory functions refuse NaN).
        best_gamma = max(gammas) if isinstance(gamma, str) else gamma
        predicted = predicted_v = float("nan")
    else:
        if isinstance(gamma, str):
            best_gamma = max(
                gammas,
                key=lambda g: analysis.expected_speedup_with_verify_cost(
                    alpha, g, c, v(g)
                ),
            )
        else:
            best_gamma = gamma
        predicted = analysis.expected_speedup(alpha, best_gamma, c)
        predicted_v = analysis.expected_speedup_with_verify_cost(
            alpha, best_gamma, c, v(best_gamma)
        )
    measured = base["median"] / speculative["median"]
    # Per-round breakdown: a round is gamma draft calls (the first re-feeds
    # one more token: a 2-token call) and a verify pass of gamma + 1 tokens;
    # "other" is the rest of the measured round (sampling, acceptance,
    # bookkeeping, buffer and cache copies). A round's time is the mean call
    # time minus the per-call cost (a call that decodes nothing), divided by
    # the rounds per call.
    rounds = speculative["rounds"]
    round_s = (speculative["mean"] - (speculative["fixed"] or 0.0)) / rounds
    plain_step_s = (base["mean"] - (base["fixed"] or 0.0)) / base["steps"]
    if isinstance(gamma, str):
        draft_s = verify_s = other_s = float("nan")
    else:
        draft_s = (
            draft_seconds[2] + (gamma - 1) * draft_seconds[1] if model_draft else 0.0
        )
        verify_s = target_seconds[gamma + 1]
        other_s = round_s - draft_s - verify_s
    return {
        "task": f"{pair} (batch {batch_size}, max_length {max_length})",
        "batch_size": batch_size,
        "max_length": max_length,
        "draft": draft,
        "temperature": temperature,
        "gamma": gamma,
        "alpha": alpha,
        "c": c,
        "tokens_per_target_call": stats["tokens_per_target_call"],
        "predicted_speedup": predicted,
        "measured_speedup": measured,
        "efficiency": measured / predicted,
        "verify_cost": v(best_gamma),
        "predicted_with_verify_cost": predicted_v,
        "efficiency_with_verify_cost": measured / predicted_v,
        "baseline_ms": base["median"] * 1000,
        "speculative_ms": speculative["median"] * 1000,
        # First call (trace + compile + one run) minus a timed call.
        "baseline_compile_s": base["first_call"] - base["median"],
        "speculative_compile_s": speculative["first_call"] - speculative["median"],
        "target_step_ms": step * 1000,
        "plain_step_ms": plain_step_s * 1000,
        "plain_other_ms": (plain_step_s - step) * 1000,
        "rounds_per_call": rounds,
        # None: not measured (encoder-decoders), counted in the round.
        "baseline_fixed_ms": _ms(base["fixed"]),
        "speculative_fixed_ms": _ms(speculative["fixed"]),
        "round_ms": round_s * 1000,
        "draft_ms": draft_s * 1000,
        "verify_ms": verify_s * 1000,
        "other_ms": other_s * 1000,
        **_profiled(alpha, gamma, model_draft, base, speculative),
    }


def _profiled(alpha, gamma, model_draft, base, speculative):
    """The row's profiled breakdown (`--profile`): ms per round of each
    phase inside the real program, per plain step of the target alone, and
    c, v and Theorem 3.8 from those in-program costs, against the traced
    calls' own speedup (walltime, tracing included in both) at their own
    alpha (the traced prompt batch's)."""
    from keras_specdec import analysis

    if not speculative.get("profile") or not base.get("profile"):
        return {}
    spec, plain = speculative["profile"], base["profile"]
    per_round = {
        k: v * 1000 / spec["rounds"]
        for k, v in spec["seconds"].items()
        if k not in ("walltime", "matched")
    }
    plain_step = plain["seconds"].get("loop", 0.0) * 1000 / plain["rounds"]
    alpha = spec.get("alpha", alpha)
    if isinstance(gamma, str) or not 0.0 <= alpha < 1.0:  # no single c, v
        c = v = predicted = float("nan")
    else:
        c = per_round.get("propose", 0.0) / gamma / plain_step if model_draft else 0
        v = per_round.get("verify", 0.0) / plain_step
        predicted = analysis.expected_speedup_with_verify_cost(alpha, gamma, c, v)
    measured = plain["seconds"]["walltime"] / spec["seconds"]["walltime"]
    # Theorem 3.8 plus the per-call setup (prefill, initial states) both
    # calls pay once, which the theorem leaves out: the plain call decodes
    # `plain["rounds"]` tokens at plain_step each.
    setup_plain = plain["seconds"].get("setup", 0.0) * 1000
    setup_spec = spec["seconds"].get("setup", 0.0) * 1000
    decode_plain = plain["rounds"] * plain_step
    predicted_setup = (setup_plain + decode_plain) / (
        setup_spec + decode_plain / predicted
    )
    # The round's model calls (draft steps, verify pass) against all of it.
    round_ms = sum(v for k, v in per_round.items() if k != "setup")
    model_calls = per_round.get("propose", 0.0) + per_round.get("verify", 0.0)
    return {
        "profiled_ms_per_round": per_round,
        "profiled_setup_ms": spec["seconds"].get("setup", 0.0) * 1000,
        "profiled_plain_step_ms": plain_step,
        "profiled_plain_setup_ms": plain["seconds"].get("setup", 0.0) * 1000,
        "profiled_matched": spec["seconds"]["matched"],
        "profiled_alpha": alpha,
        "profiled_c": c,
        "profiled_v": v,
        "profiled_model_call_share": model_calls / round_ms,
        "profiled_predicted": predicted,
        "profiled_measured": measured,
        "profiled_efficiency": measured / predicted,
        "profiled_predicted_with_setup": predicted_setup,
        "profiled_efficiency_with_setup": measured / predicted_setup,
    }


def _ms(seconds):
    return None if seconds is None else seconds * 1000


def print_row(r):
    print(
        f"T={r['temperature']} batch={r['batch_size']} draft={r['draft']} "
        f"gamma={r['gamma']} alpha={r['alpha']:.3f} c={r['c']:.3f} "
        f"tokens/row-call={r['tokens_per_target_call']:.2f} "
        f"predicted={r['predicted_speedup']:.2f}x "
        f"measured={r['measured_speedup']:.2f}x v={r['verify_cost']:.2f} "
        f"predicted_v={r['predicted_with_verify_cost']:.2f}x "
        f"efficiency_v={r['efficiency_with_verify_cost']:.2f} "
        f"base={r['baseline_ms']:.1f}ms spec={r['speculative_ms']:.1f}ms "
        f"round={r['round_ms']:.2f}ms (draft {r['draft_ms']:.2f} + verify "
        f"{r['verify_ms']:.2f} + other {r['other_ms']:.2f}) "
        f"compile={r['speculative_compile_s']:.1f}s",
        flush=True,
    )


def _is_schedule(r):
    return isinstance(r["gamma"], str)


def _fmt(x, spec=".2f"):
    return (
        "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:{spec}}"
    )


def to_markdown(rows, command):
    lines = [
        f"Measured with `{command}`.",
        "",
        "| task | draft | T | gamma | alpha | c | tokens/row-call | Thm 3.8 "
        "predicted | measured | efficiency | v | predicted with v | efficiency "
        "with v | compile s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['task']} | {r['draft']} | {r['temperature']} | {r['gamma']} | "
            f"{r['alpha']:.3f} | {r['c']:.3f} | {r['tokens_per_target_call']:.2f} | "
            f"{r['predicted_speedup']:.2f}x | {r['measured_speedup']:.2f}x | "
            f"{r['efficiency']:.2f} | {r['verify_cost']:.2f} | "
            f"{r['predicted_with_verify_cost']:.2f}x | "
            f"{r['efficiency_with_verify_cost']:.2f} | "
            f"{r['speculative_compile_s']:.1f} |"
        )
    lines += [
        "",
        "v = time(gamma + 1 token verification pass) / time(one target step), "
        "measured inside a compiled loop at the row's batch size; Theorem 3.8 "
        "assumes v = 1 (free parallel scoring, as on TPUs); 'predicted with v' "
        "divides by gamma c + v instead of gamma c + 1. tokens/row-call = new "
        "tokens per row per target call. compile s = first call minus a timed "
        "call (trace and XLA compile).",
    ]
    lines += _compile_table(rows)
    lines += _breakdown_table(rows)
    lines += _batch_table(rows)
    distinct = {
        r["temperature"]: r["target_distinct_4grams"]
        for r in rows
        if "target_distinct_4grams" in r
    }
    if distinct:
        lines += [
            "",
            "Target outputs (target alone, same prompts): distinct 4-gram ratio "
            + ", ".join(f"{v:.2f} at T={t}" for t, v in distinct.items())
            + " (1 = no repeated 4-gram; degenerate loops inflate alpha).",
        ]
    lines += [
        "",
        "Table 3 analogue (alpha by draft kind, mean over its gammas):",
        "",
        "| draft | T=0 | T=1 |",
        "|---|---|---|",
    ]
    for draft in dict.fromkeys(r["draft"] for r in rows):
        cells = []
        for t in (0, 1):
            alphas = [
                r["alpha"]
                for r in rows
                if r["draft"] == draft and r["temperature"] == t and not _is_schedule(r)
            ]
            cells.append(f"{sum(alphas) / len(alphas):.3f}" if alphas else "-")
        lines.append(f"| {draft} | {cells[0]} | {cells[1]} |")
    schedule_rows = [r for r in rows if _is_schedule(r)]
    if schedule_rows:
        lines += [
            "",
            "Adaptive gamma vs the best fixed gamma (same draft, same run):",
            "",
            "| T | batch | best fixed gamma | its speedup | schedule | speedup "
            "| ratio to best fixed |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in schedule_rows:
            fixed = [
                f
                for f in rows
                if f["draft"] == r["draft"]
                and f["temperature"] == r["temperature"]
                and f["batch_size"] == r["batch_size"]
                and not _is_schedule(f)
            ]
            if not fixed:
                continue
            best = max(fixed, key=lambda f: f["measured_speedup"])
            lines.append(
                f"| {r['temperature']} | {r['batch_size']} | {best['gamma']} | "
                f"{best['measured_speedup']:.2f}x | {r['gamma']} | "
                f"{r['measured_speedup']:.2f}x | "
                f"{r['measured_speedup'] / best['measured_speedup']:.3f} |"
            )
    return "\n".join(lines) + "\n"


def _model_draft_rows(rows):
    """Rows of the pair's own draft model (the first draft in the run)."""
    return [r for r in rows if r["draft"] == rows[0]["draft"]]


def _compile_table(rows):
    """Compile seconds of the target alone, each fixed gamma and each
    schedule, per temperature and batch size, and schedule / largest fixed
    gamma (the schedules' `max_speculative_tokens`)."""
    sel = _model_draft_rows(rows)
    gammas = list(dict.fromkeys(r["gamma"] for r in sel))
    fixed = [g for g in gammas if not isinstance(g, str)]
    schedules = [g for g in gammas if isinstance(g, str)]
    header = ["T", "batch", "target alone"]
    header += [g if isinstance(g, str) else f"gamma {g}" for g in gammas]
    header += [f"{s} / gamma {max(fixed)}" for s in schedules if fixed]
    lines = [
        "",
        f"Compile time (s, first call minus a timed call; draft {rows[0]['draft']}):",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    for key in dict.fromkeys((r["temperature"], r["batch_size"]) for r in sel):
        group = {
            r["gamma"]: r for r in sel if (r["temperature"], r["batch_size"]) == key
        }
        cells = [
            str(key[0]),
            str(key[1]),
            f"{group[gammas[0]]['baseline_compile_s']:.1f}",
        ]
        cells += [
            f"{group[g]['speculative_compile_s']:.1f}" if g in group else "-"
            for g in gammas
        ]
        if fixed:
            largest = group.get(max(fixed))
            for s in schedules:
                if largest and s in group and largest["speculative_compile_s"] > 0:
                    ratio = (
                        group[s]["speculative_compile_s"]
                        / largest["speculative_compile_s"]
                    )
                    cells.append(f"{ratio:.2f}x")
                else:
                    cells.append("-")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _breakdown_table(rows):
    lines = [
        "",
        "Where a round's time goes (ms; draft = gamma draft calls, the first "
        "of 2 tokens; verify = one gamma + 1 token target pass; both timed "
        "inside compiled loops; round = (mean call - per-call cost) / rounds "
        "per call, per-call cost = a call whose prompt fills max_length, so "
        "it decodes nothing (encoder-decoders: not measurable, left in the "
        "round); other = round - draft - verify: sampling, "
        "acceptance, bookkeeping, buffer and cache copies; model-free drafts' "
        "proposals are counted in other):",
        "",
        "| T | batch | draft | gamma | rounds/call | round | draft | verify | "
        "other | other / round | other / target step | efficiency with v |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if _is_schedule(r):
            continue
        lines.append(
            f"| {r['temperature']} | {r['batch_size']} | {r['draft']} | "
            f"{r['gamma']} | {r['rounds_per_call']:.1f} | {r['round_ms']:.2f} | "
            f"{r['draft_ms']:.2f} | {r['verify_ms']:.2f} | {r['other_ms']:.2f} | "
            f"{r['other_ms'] / r['round_ms']:.2f} | "
            f"{r['other_ms'] / r['target_step_ms']:.2f} | "
            f"{r['efficiency_with_verify_cost']:.2f} |"
        )
    lines += _profiled_table(rows)
    lines += ["", "Target alone, per decoding step (ms):", ""]
    lines += [
        "| T | batch | step | target step | other | per-call cost plain "
        "| per-call cost speculative (first draft row) |",
        "|---|---|---|---|---|---|---|",
    ]
    for key in dict.fromkeys((r["temperature"], r["batch_size"]) for r in rows):
        r = next(x for x in rows if (x["temperature"], x["batch_size"]) == key)
        lines.append(
            f"| {key[0]} | {key[1]} | {r['plain_step_ms']:.2f} | "
            f"{r['target_step_ms']:.2f} | {r['plain_other_ms']:.2f} | "
            f"{_fmt(r['baseline_fixed_ms'], '.1f')} | "
            f"{_fmt(r['speculative_fixed_ms'], '.1f')} |"
        )
    return lines


def _profiled_table(rows):
    rows = [r for r in rows if "profiled_ms_per_round" in r]
    if not rows:
        return []
    lines = [
        "",
        "Inside the real program (`--profile`: a profiler trace of generate() "
        "on the first prompt batch, each XLA op's time given to the round "
        "phase whose named scope emitted it, `keras_specdec.bench.profiling`; "
        "ms of op time per round; plain step = the target alone's decoding loop per "
        "step; setup = per call: prefill, initial states, output; model "
        "calls = (propose + verify) / round; c and v from these in-program "
        "times; alpha and measured = the traced calls' own (that prompt "
        "batch, tracing in both walltimes); efficiency = measured / Theorem "
        "3.8 with alpha, c and v; + setup: the theorem's decoding time plus "
        "each call's setup, which the theorem leaves out):",
        "",
        "| T | batch | draft | gamma | propose | verify | accept | commit | "
        "rest of loop | round | model calls | plain step | setup spec / plain "
        "| alpha | c | v | Thm 3.8 with them | measured | efficiency | "
        "Thm 3.8 + setup | efficiency + setup |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
        "---|---|",
    ]
    for r in rows:
        p = r["profiled_ms_per_round"]
        total = sum(v for k, v in p.items() if k != "setup")
        lines.append(
            f"| {r['temperature']} | {r['batch_size']} | {r['draft']} | "
            f"{r['gamma']} | {p.get('propose', 0):.2f} | {p.get('verify', 0):.2f} | "
            f"{p.get('accept', 0):.2f} | {p.get('commit', 0):.2f} | "
            f"{p.get('loop', 0) + p.get('unknown', 0):.2f} | {total:.2f} | "
            f"{r['profiled_model_call_share']:.3f} | "
            f"{r['profiled_plain_step_ms']:.2f} | "
            f"{r['profiled_setup_ms']:.1f} / {r['profiled_plain_setup_ms']:.1f} | "
            f"{r['profiled_alpha']:.3f} | "
            f"{r['profiled_c']:.3f} | {r['profiled_v']:.2f} | "
            f"{r['profiled_predicted']:.2f}x | {r['profiled_measured']:.2f}x | "
            f"{r['profiled_efficiency']:.2f} | "
            f"{r['profiled_predicted_with_setup']:.2f}x | "
            f"{r['profiled_efficiency_with_setup']:.2f} |"
        )
    return lines


def _batch_table(rows):
    batch_sizes = sorted({r["batch_size"] for r in rows})
    if len(batch_sizes) < 2:
        return []
    lines = [
        "",
        f"Batches (rows cycle through the held-out prompts; 'vs batch "
        f"{batch_sizes[0]}' = tokens/row-call over the same configuration's "
        f"at batch {batch_sizes[0]}; v and c measured at each batch size):",
        "",
        "| T | draft | gamma | batch | tokens/row-call | vs batch "
        f"{batch_sizes[0]} | alpha | c | v | predicted with v | speedup | "
        "target alone ms | speculative ms |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    ordered = sorted(
        rows,
        key=lambda r: (
            r["temperature"],
            list(dict.fromkeys(x["draft"] for x in rows)).index(r["draft"]),
            str(r["gamma"]) if _is_schedule(r) else f"{r['gamma']:04d}",
            r["batch_size"],
        ),
    )
    for r in ordered:
        lines.append(
            f"| {r['temperature']} | {r['draft']} | {r['gamma']} | "
            f"{r['batch_size']} | {r['tokens_per_target_call']:.2f} | "
            f"{r['tokens_per_target_call_vs_first_batch']:.3f} | "
            f"{r['alpha']:.3f} | {r['c']:.3f} | {r['verify_cost']:.2f} | "
            f"{r['predicted_with_verify_cost']:.2f}x | "
            f"{r['measured_speedup']:.2f}x | {r['baseline_ms']:.1f} | "
            f"{r['speculative_ms']:.1f} |"
        )
    return lines
