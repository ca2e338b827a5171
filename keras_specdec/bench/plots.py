"""PNG plots of the benchmark's rows (results of `keras_specdec.bench`)."""

import os

from keras_specdec.bench.report import _is_schedule, _model_draft_rows


def plot(rows, out_dir):
    """PNG plots; returns the file names written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sel_all = _model_draft_rows(rows)
    draft_name = rows[0]["draft"]
    pair = rows[0]["task"].split(" (")[0]
    max_length = rows[0]["max_length"]
    temperatures = sorted({r["temperature"] for r in rows})
    colours = {t: f"C{i}" for i, t in enumerate(temperatures)}
    batch_sizes = sorted({r["batch_size"] for r in rows})
    written = []
    for batch_size in batch_sizes:
        suffix = "" if batch_size == batch_sizes[0] else f"_batch{batch_size}"
        sel_b = [r for r in sel_all if r["batch_size"] == batch_size]
        fixed_gammas = sorted({r["gamma"] for r in sel_b if not _is_schedule(r)})
        schedules = list(dict.fromkeys(r["gamma"] for r in sel_b if _is_schedule(r)))
        if not fixed_gammas:
            continue
        schedule_x = {s: max(fixed_gammas) + 1.5 + i for i, s in enumerate(schedules)}
        # Speedup against gamma.
        fig, ax = plt.subplots(figsize=(7.5, 4.8))
        ax.axhline(1.0, color="0.5", ls="--", lw=1, label="target alone (1.0)")
        for t in temperatures:
            colour = colours[t]
            sel = [r for r in sel_b if r["temperature"] == t and not _is_schedule(r)]
            if not sel:
                continue
            g = [r["gamma"] for r in sel]
            ax.plot(
                g, [r["measured_speedup"] for r in sel], "o", color=colour, ms=7,
                label=f"T={t}: measured",
            )  # fmt: skip
            ax.plot(
                g, [r["predicted_with_verify_cost"] for r in sel], "-",
                color=colour, label=f"T={t}: Theorem 3.8 with measured v",
            )  # fmt: skip
            line = theorem_line(sel)
            if line is not None:
                gammas, speedups, alpha = line
                ax.plot(
                    gammas, speedups, ":", color=colour, alpha=0.7,
                    label=f"T={t}: Theorem 3.8, v=1 (alpha {alpha:.2f}, "
                    f"c {sel[0]['c']:.3f})",
                )  # fmt: skip
            for r in sel_b:
                if r["temperature"] == t and _is_schedule(r):
                    marker = "*" if r["gamma"] == "auto" else "X"
                    ax.plot(
                        schedule_x[r["gamma"]], r["measured_speedup"], marker,
                        color=colour, ms=11, mec="k",
                        label=f"T={t}: {r['gamma']} schedule",
                    )  # fmt: skip
        ticks = fixed_gammas + [schedule_x[s] for s in schedules]
        ax.set_xticks(ticks, [str(g) for g in fixed_gammas] + schedules)
        ax.set_xlabel(
            "gamma (num_speculative_tokens)"
            + (", then adaptive schedules" if schedules else "")
        )
        ax.set_ylabel("speedup over the target alone (walltime)")
        ax.set_ylim(bottom=0)
        ax.set_title(
            f"{pair}: speculative decoding with {draft_name}\n"
            f"batch {batch_size}, max_length {max_length}"
        )
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
        fig.tight_layout()
        name = f"speedup_vs_gamma{suffix}.png"
        fig.savefig(os.path.join(out_dir, name), dpi=100)
        plt.close(fig)
        written.append(name)
        # Acceptance rate against gamma.
        fig, ax = plt.subplots(figsize=(6.5, 4.2))
        for t in temperatures:
            sel = [r for r in sel_b if r["temperature"] == t and not _is_schedule(r)]
            if sel:
                ax.plot(
                    [r["gamma"] for r in sel], [r["alpha"] for r in sel], "o-",
                    color=colours[t], label=f"T={t}",
                )  # fmt: skip
        ax.set_ylim(0, 1.02)
        ax.set_xticks(fixed_gammas)
        ax.set_xlabel("gamma (num_speculative_tokens)")
        ax.set_ylabel("acceptance rate alpha (accepted / judged)")
        ax.set_title(
            f"{pair}: acceptance of {draft_name}\n"
            f"batch {batch_size}, max_length {max_length}"
        )
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        name = f"alpha_vs_gamma{suffix}.png"
        fig.savefig(os.path.join(out_dir, name), dpi=100)
        plt.close(fig)
        written.append(name)
    if len(batch_sizes) > 1:
        fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
        markers = "osD^vP*X"
        gammas = list(dict.fromkeys(r["gamma"] for r in sel_all))
        for t in temperatures:
            for k, g in enumerate(gammas):
                sel = [r for r in sel_all if r["temperature"] == t and r["gamma"] == g]
                if not sel:
                    continue
                b = [r["batch_size"] for r in sel]
                style = dict(color=colours[t], marker=markers[k % len(markers)])
                axes[0].plot(
                    b, [r["measured_speedup"] for r in sel], **style,
                    label=f"T={t}, gamma {g}",
                )  # fmt: skip
                axes[1].plot(b, [r["tokens_per_target_call"] for r in sel], **style)
        axes[0].axhline(1.0, color="0.5", ls="--", lw=1, label="target alone (1.0)")
        axes[0].set_ylabel("speedup over the target alone (walltime)")
        axes[1].set_ylabel("new tokens per row per target call")
        for ax in axes:
            ax.set_xscale("log", base=2)
            ax.set_xticks(batch_sizes, [str(b) for b in batch_sizes])
            ax.set_xlabel("batch size")
            ax.set_ylim(bottom=0)
            ax.grid(alpha=0.3)
        axes[0].legend(fontsize=7)
        fig.suptitle(
            f"{pair}: speculative decoding with {draft_name} against batch size, "
            f"max_length {max_length}"
        )
        fig.tight_layout()
        fig.savefig(os.path.join(out_dir, "speedup_vs_batch.png"), dpi=100)
        plt.close(fig)
        written.append("speedup_vs_batch.png")
    return written


def theorem_line(rows):
    """Theorem 3.8's v = 1 speedup at the gammas these rows measured (one
    draft, one temperature, fixed gammas): `(gammas, speedups, alpha)` with
    alpha the rows' mean, or None when no row judged a proposal (alpha NaN).

    >>> rows = [{"gamma": 2, "alpha": 0.5, "c": 0.0},
    ...         {"gamma": 4, "alpha": 0.5, "c": 0.0}]
    >>> gammas, speedups, alpha = theorem_line(rows)
    >>> gammas, [round(x, 4) for x in speedups], alpha
    ([2, 4], [1.75, 1.9375], 0.5)
    >>> theorem_line([{"gamma": 2, "alpha": float("nan"), "c": 0.0}]) is None
    True
    """
    import math

    from keras_specdec import theory

    alphas = [r["alpha"] for r in rows]
    if not alphas or any(math.isnan(a) for a in alphas):
        return None
    alpha = sum(alphas) / len(alphas)
    gammas = sorted({r["gamma"] for r in rows})
    c = rows[0]["c"]
    return gammas, [theory.expected_speedup(alpha, k, c) for k in gammas], alpha
