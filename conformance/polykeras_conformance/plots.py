"""What the report's trajectory plots share (:mod:`.report`'s L2 plot, :mod:`.l4_report`'s L4 plot):
per-step relative differences for a log axis, and the finishing of a figure of
loss / difference panels."""

from __future__ import annotations

from pathlib import Path


def rel_diffs(series, reference) -> list[float]:
    """Per-step ``|a - b| / |b|``, floored at 1e-18 so that a log axis shows exact agreement."""
    return [max(abs(a - b) / max(abs(b), 1e-300), 1e-18) for a, b in zip(series, reference)]


def save(fig, axes, out: Path, name: str, written: list[str]) -> None:
    """Label every panel's step axis, grid and legend it, write ``out/name`` and list it in ``written``."""
    for ax in axes.flat:
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / name, dpi=90)
    import matplotlib.pyplot as plt

    plt.close(fig)
    written.append(name)
