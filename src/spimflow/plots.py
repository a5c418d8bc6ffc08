"""Figures of a cohort's statistics, drawn with matplotlib's object API on the Agg canvas
(no pyplot, no display: safe on cluster nodes)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

SIGNIFICANT = "#c0392b"
OTHER = "#7f8c8d"
GROUP_COLOURS = ("#2c7fb8", "#d95f0e")


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def volcano(stats: pd.DataFrame, alpha: float, groups: Sequence[str], label: int = 10) -> Figure:
    """Volcano plot of the region tests: log2 fold change (b / a) against −log10 p; regions
    with ``p_bh < alpha`` in colour, the ``label`` smallest p labelled with their acronym."""
    fig = _figure(6.5, 5)
    ax = fig.add_subplot()
    finite = stats[np.isfinite(stats["log2_fold_change"]) & (stats["p"] > 0)]
    sig = finite["p_bh"] < alpha
    y = -np.log10(finite["p"])
    ax.scatter(finite.loc[~sig, "log2_fold_change"], y[~sig], s=12, c=OTHER, alpha=0.6, label="not significant")
    ax.scatter(finite.loc[sig, "log2_fold_change"], y[sig], s=18, c=SIGNIFICANT, label=f"p_bh < {alpha}")
    for row in finite.nsmallest(label, "p").itertuples():
        ax.annotate(
            str(row.acronym),
            (row.log2_fold_change, -np.log10(row.p)),
            fontsize=7,
            xytext=(3, 2),
            textcoords="offset points",
        )
    ax.axvline(0, color="k", lw=0.5)
    ax.set_xlabel(f"log2 fold change ({groups[1]} / {groups[0]})")
    ax.set_ylabel("−log10 p")
    ax.set_title(f"Regions: {int(sig.sum())} of {len(finite)} with p_bh < {alpha}")
    ax.legend(loc="upper left", fontsize=8, frameon=False)
    return fig


def top_regions_bars(
    stats: pd.DataFrame, values: pd.DataFrame, value: str, groups: Sequence[str], n: int = 15
) -> Figure:
    """Bars of the ``n`` regions with the smallest p: group means ± sd of ``value``, with each
    brain's value as a dot."""
    top = stats.nsmallest(n, "p")
    fig = _figure(max(6.0, 0.45 * len(top) + 2), 4.5)
    ax = fig.add_subplot()
    x = np.arange(len(top))
    width = 0.38
    for k, (group, colour) in enumerate(zip(groups, GROUP_COLOURS)):
        suffix = "a" if k == 0 else "b"
        ax.bar(
            x + (k - 0.5) * width,
            top[f"mean_{suffix}"],
            width,
            yerr=top[f"std_{suffix}"],
            color=colour,
            alpha=0.75,
            label=group,
            capsize=2,
        )
        sub = values[values["group"] == group].set_index("region_id")
        for i, rid in enumerate(top["region_id"]):
            pts = sub.loc[[rid], value] if rid in sub.index else []
            ax.scatter(np.full(len(pts), x[i] + (k - 0.5) * width), pts, s=8, c="k", zorder=3)
    ax.set_xticks(
        x,
        [f"{a} ({p:.2g})" for a, p in zip(top["acronym"], top["p_bh"])],
        fontsize=7,
        rotation=45,
        ha="right",
        rotation_mode="anchor",
    )
    ax.set_xlabel("region (p_bh)")
    ax.set_ylabel(value)
    ax.set_title(f"Top {len(top)} regions by p")
    ax.legend(fontsize=8, frameon=False)
    return fig


def sample_scatter(values: pd.DataFrame, value: str) -> Figure:
    """Each brain's region values against the first brain's (log-log): how alike the brains are,
    and which one is off."""
    wide = values.pivot_table(index="region_id", columns="sample", values=value, sort=False)
    samples = list(dict.fromkeys(values["sample"]))
    ref = samples[0]
    fig = _figure(5.5, 5)
    ax = fig.add_subplot()
    positive = wide[wide[ref] > 0]
    for s in samples[1:]:
        keep = positive[s] > 0
        r = np.corrcoef(np.log10(positive.loc[keep, ref]), np.log10(positive.loc[keep, s]))[0, 1]
        ax.scatter(positive.loc[keep, ref], positive.loc[keep, s], s=8, alpha=0.6, label=f"{s} (r = {r:.3f})")
    lo = float(np.nanmin(positive.to_numpy()[positive.to_numpy() > 0])) if len(positive) else 1.0
    hi = float(np.nanmax(positive.to_numpy())) if len(positive) else 10.0
    ax.plot([lo, hi], [lo, hi], "k-", lw=0.5)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(f"{value} in {ref}")
    ax.set_ylabel(f"{value} in each other brain")
    ax.legend(fontsize=7, frameon=False)
    return fig


def planes_to_show(colour: np.ndarray, axis: int, n: int) -> list[int]:
    """The ``n`` planes along ``axis`` with the most coloured (significant) voxels, in order;
    evenly spaced planes when nothing is coloured."""
    coloured = np.any(colour > 0, axis=-1).sum(axis=tuple(a for a in range(3) if a != axis))
    if not coloured.any():
        return [int(i) for i in np.linspace(0, colour.shape[axis] - 1, n + 2)[1:-1].round()]
    return sorted(int(i) for i in np.argsort(-coloured, kind="stable")[:n])


def p_map_slices(colour: np.ndarray, reference: np.ndarray, voxel_size: Sequence[float], n: int = 4) -> Figure:
    """Along each atlas axis, the ``n`` planes with the most significant voxels: the colour
    p-value map over the atlas reference (grey)."""
    ref = reference.astype(np.float32)
    ref = ref / max(float(np.percentile(ref[ref > 0], 99.5)) if np.any(ref > 0) else 1.0, 1e-9)
    fig = _figure(3 * n, 9)
    vz, vy, vx = voxel_size
    aspects = (vy / vx, vz / vx, vz / vy)
    for axis in range(3):
        for k, index in enumerate(planes_to_show(colour, axis, n)):
            rgb = np.take(colour, index, axis=axis).astype(np.float32) / 255.0
            grey = np.clip(np.take(ref, index, axis=axis), 0, 1)[..., None]
            shown = np.where(rgb.max(axis=-1, keepdims=True) > 0, rgb, grey * 0.8)
            ax = fig.add_subplot(3, n, axis * n + k + 1)
            ax.imshow(shown, aspect=aspects[axis], interpolation="nearest")
            ax.set_title(f"axis {axis} = {index}", fontsize=8)
            ax.set_axis_off()
    fig.suptitle(
        "p-value colour map (p < alpha; red: higher in the second group, green: lower) over the atlas reference"
    )
    return fig
