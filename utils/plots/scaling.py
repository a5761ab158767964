"""Scaling across processes, from results.csv rows alone: tokens/s at each world size and
the efficiency against world size x the one-process figure (weak scaling: BATCH per rank)."""

import matplotlib

matplotlib.use("Agg")  # files only: no display needed
import matplotlib.pyplot as plt  # noqa: E402


def efficiency(df):
    """{world_size: (median tokens/s, efficiency)} over the measured steps of the runs given (the caller picks
    them: one invocation's runs, so a file's other models or machines never stand in for a world size)."""
    measured = df[df["phase"] == "measured"]
    tokens = {int(n): tps for n, tps in measured.groupby("world_size")["tokens_per_s"].median().items()}
    if 1 not in tokens:
        return {}
    return {n: (tps, tps / (n * tokens[1])) for n, tps in sorted(tokens.items())}


def draw(df, nproc, path):
    """Plot tokens/s against world size beside ideal scaling; return (report lines, path)."""
    table = efficiency(df)
    sizes = list(table)
    lines = [f"{n} process(es): {tps / 1e3:.1f}k tokens/s, efficiency {eff:.0%}" for n, (tps, eff) in table.items()]
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    if table:
        ax.plot(sizes, [table[n][0] for n in sizes], "o-", label="measured")
        ax.plot(sizes, [n * table[1][0] for n in sizes], "--", color="gray", label="ideal: n x one process")
        for n in sizes:
            ax.annotate(f"{table[n][1]:.0%}", (n, table[n][0]), textcoords="offset points", xytext=(4, -12))
    row = df.iloc[-1]
    ax.set(
        xlabel="processes (world size)", ylabel="tokens/s (all ranks)", xticks=range(1, nproc + 1),
        title=f"Scaling: {row['technique']} under {row['parallel']} ({row['backend']})\n{row['device']} · "
        f"{row['model']} · B={row['batch']} per rank, T={row['seq']}",
    )
    ax.set_ylim(bottom=0)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return lines, path
