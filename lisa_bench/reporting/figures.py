"""Every figure of the suite. The one place that picks matplotlib's backend (Agg: files, no screen)
and saves a figure, as PNG and PDF side by side."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

PARTS = [("weights_bytes", "weights"), ("grads_bytes", "gradients"), ("optimizer_bytes", "optimizer state"),
         ("activations_bytes", "activations")]


# A figure is read at a page's text width (a two-column paper's, 7 inches) or its own, if narrower: every text in
# it must then be at least MIN_POINTS high. ``save`` raises any smaller one to that; figures that place labels
# themselves ask ``readable_size`` first, so their placement is done at the size they will have.
COLUMN_INCHES = 7.0
MIN_POINTS = 6.0


def readable_size(fig, size: float = 0.0) -> float:
    """The smallest font size (points) readable in ``fig`` once scaled to COLUMN_INCHES, or ``size`` if larger."""
    scale = min(1.0, COLUMN_INCHES / fig.get_size_inches()[0])
    return max(size, MIN_POINTS / scale)


def _make_readable(fig) -> None:
    from matplotlib.text import Text

    floor = readable_size(fig)
    for text in fig.findobj(Text):
        if text.get_text() and text.get_visible() and text.get_fontsize() < floor - 1e-9:
            text.set_fontsize(floor)


def save(fig, path: Path, caption: str | None = None) -> list[Path]:
    """Write ``path``.png and ``path``.pdf and close the figure; with ``caption`` (what the figure shows, and the
    model, data, steps, seeds and machine behind it), ``path``.txt beside them. Every text is made readable at a
    page's width first (``readable_size``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _make_readable(fig)
    if fig.get_layout_engine() is None:  # a figure that chose its own layout (constrained) keeps it
        fig.tight_layout()
    out = [path.with_suffix(".png"), path.with_suffix(".pdf")]
    for p in out:
        fig.savefig(p, dpi=130)
    plt.close(fig)
    if caption:
        path.with_suffix(".txt").write_text(caption.strip() + "\n")
        out.append(path.with_suffix(".txt"))
    return out


def integer_steps(ax) -> None:
    """Ticks at whole steps only (a step axis of a short run otherwise shows 2.5, 7.5)."""
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _shape_value(column: str, value) -> str:
    if column == "gradient_checkpointing":
        return "checkpointing" if str(value).strip().lower() in ("true", "1", "1.0") else "no checkpointing"
    if column in ("batch_size", "seq_len"):
        return f"{'batch' if column == 'batch_size' else 'seq'} {float(value):g}"
    return str(value)


SHAPE_AXES = ("precision", "attn_implementation", "gradient_checkpointing", "batch_size", "seq_len")


def cell_labels(table: pd.DataFrame) -> pd.Series:
    """A memory cell's name in a figure: its experiment, then each shape setting that varies across the table (a
    study's memory grid: recipe, attention, checkpointing, batch, length)."""
    label = table["experiment"].astype(str)
    for column in [c for c in SHAPE_AXES if c in table and table[c].nunique() > 1]:
        label = label + ", " + table[column].map(lambda v, c=column: _shape_value(c, v))
    return label


def memory_breakdown(table: pd.DataFrame, path: Path, context: str = "") -> list[Path]:
    """Stacked bars of the measured breakdown per method (one panel per model), with the measured
    peak (black tick) and the analytic prediction (red tick); ``context`` (the cells' shape, the machine) ends
    the caption."""
    ok = table[table["status"] == "ok"].assign(label=lambda t: cell_labels(t))
    models = list(dict.fromkeys(ok["model"]))
    cols = min(2, max(1, len(models)))
    rows = -(-max(1, len(models)) // cols)
    fig, grid = plt.subplots(rows, cols, figsize=(5.5 * cols, 4 * rows), squeeze=False)
    axes = [grid.ravel()]
    for ax in grid.ravel()[len(models):]:
        ax.axis("off")
    for ax, model in zip(axes[0], models):
        sub = ok[ok["model"] == model]
        x = range(len(sub))
        bottom = [0.0] * len(sub)
        for col, label in PARTS:
            vals = (sub[col] / 2**30).tolist()
            ax.bar(x, vals, bottom=bottom, label=label)
            bottom = [b + v for b, v in zip(bottom, vals)]
        ax.scatter(x, sub["peak_bytes"] / 2**30, marker="_", s=400, color="black", label="measured peak", zorder=3)
        ax.scatter(x, sub["predicted_peak_bytes"] / 2**30, marker="x", s=40, color="purple", label="predicted peak",
                   zorder=3)
        ax.set_xticks(list(x), sub["label"], rotation=35, ha="right")
        ax.set_ylabel("GiB (each part at its own peak)")
        same = [_shape_value(c, sub[c].iloc[0]) for c in ("precision", "seq_len") if ok[c].nunique() == 1]
        ax.set_title(f"{model} ({', '.join([str(sub['device'].iloc[0])] + same)})", fontsize=10)
    axes[0][min(len(models), cols) - 1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return save(fig, path, "Memory per method: each part (weights, gradients, optimizer state, activations) at its "
                           "own peak, stacked; the parts are not all resident at once (activations are freed as "
                           "gradients appear), so a stack may stand above the measured peak (black tick), which is the "
                           "allocator's (CUDA) or the process's resident set (CPU); the analytic model's peak is the "
                           "purple cross." + (f" {context}" if context else ""))


def speed_bars(table: pd.DataFrame, path: Path, context: str = "") -> list[Path]:
    """Tokens per second relative to full fine-tuning of the same model (bars), next to the speed a perfect
    implementation would reach (markers), one panel per model; ``context`` ends the caption."""
    ok = table[(table["status"] == "ok") & table["speed_vs_full"].notna()]
    ok = ok.assign(label=cell_labels(ok))
    models = list(dict.fromkeys(ok["model"])) or ["(no cell with a full baseline)"]
    fig, axes = plt.subplots(1, len(models), figsize=(min(11.0, max(4.0, 0.5 * len(ok) + 1.5 * len(models))), 3.5),
                             squeeze=False, sharey=True)
    for ax, model in zip(axes[0], models):
        sub = ok[ok["model"] == model]
        ax.bar(range(len(sub)), sub["speed_vs_full"], color="tab:blue", label="measured")
        if "speed_bound_vs_full" in sub and sub["speed_bound_vs_full"].notna().any():
            ax.scatter(range(len(sub)), sub["speed_bound_vs_full"], marker="_", s=300, color="tab:red", zorder=3,
                       label="bound")
            ax.legend(fontsize=6)
        ax.set_xticks(range(len(sub)), sub["label"], rotation=40, ha="right", fontsize=7)
        ax.axhline(1.0, color="gray", lw=0.8)
        ax.set_title(model, fontsize=9)
    axes[0][0].set_ylabel("tokens/s relative to full")
    return save(fig, path, "Training tokens per second of each method relative to full fine-tuning of the same model "
                           "at the same recipe and shape (bars), and the bound a perfect implementation would reach (red ticks): full fine-tuning's "
                           "time per token over the method's, each time the matrix FLOPs per token (forward 2 per "
                           "weight; backward 4 per trained weight, 2 per frozen weight that passes gradients down, 0 "
                           "below the lowest trained block) at the device's measured matmul rate, plus AdamW's memory "
                           "traffic per token at its measured bandwidth (memory/speed.py). The paper reports LISA 2.9 "
                           "times faster than full fine-tuning and 1.5 times faster than LoRA."
                + (f" {context}" if context else ""))


def memory_over_steps(run_dirs: list[Path], path: Path, caption: str | None = None) -> list[Path]:
    """Per-step memory and optimizer state of several training runs (e.g. LISA flat, callback growing)."""
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.5))
    kind = "memory"
    for run in map(Path, run_dirs):
        metrics = json.loads((run / "metrics.json").read_text())
        log = pd.read_json(run / "train_log.jsonl", lines=True)
        if log.empty:  # the untrained base model
            continue
        label = metrics["method"] if run.name == metrics["method"] else f"{metrics['method']} ({run.name})"
        ax1.plot(log["step"], log["memory_bytes"] / 2**20, label=label)
        ax2.plot(log["step"], log["optimizer_state_bytes"] / 2**20, label=label)
        kind = metrics["memory_kind"]
    ax1.set_title(f"memory per step ({kind})")
    ax2.set_title("optimizer state per step")
    for ax in (ax1, ax2):
        ax.set_xlabel("step")
        integer_steps(ax)
        ax.set_ylabel("MiB")
        ax.legend(fontsize=7)
    return save(fig, path, caption)


def memory_trace(trace: pd.DataFrame, path: Path, caption: str | None = None) -> list[Path]:
    """Per-step memory and optimizer state of each cell of a ``lisa-bench memory`` run (one column per
    model): peak allocated per step on CUDA, resident set on the CPU."""
    if trace.empty:  # every cell skipped (e.g. too big for the machine) or failed
        fig, ax = plt.subplots(figsize=(5, 2))
        ax.axis("off")
        ax.text(0.5, 0.5, "no measured cell: nothing to trace", ha="center", va="center")
        return save(fig, path)
    cuda = "step_peak_bytes" in trace and trace["step_peak_bytes"].notna().any()
    memory_col, memory_name = ("step_peak_bytes", "peak allocated per step") if cuda else ("rss_bytes", "resident set")
    trace = trace.copy()
    # one line per cell: the experiment, with its precision and length where the trace holds several
    varying = [c for c in ("precision", "attn_implementation", "seq_len") if c in trace and trace[c].nunique() > 1]
    trace["line"] = trace["experiment"]
    for c in varying:
        trace["line"] = trace["line"] + f" {c}=" + trace[c].map(lambda v: f"{v:g}" if isinstance(v, float) else str(v))
    models = list(dict.fromkeys(trace["model"]))
    colors = {m: plt.cm.tab10(i % 10) for i, m in enumerate(dict.fromkeys(trace["line"]))}  # same in every panel
    fig, axes = plt.subplots(2, len(models), figsize=(min(11.0, 5 * len(models)), 6), squeeze=False)
    # each line in its own dashes, so that one drawn over another (two cells measuring the same) still shows both
    dashes = {line: LINESTYLES[i % len(LINESTYLES)] for i, line in enumerate(colors)}
    for col, model in enumerate(models):
        for line, sub in trace[trace["model"] == model].groupby("line", sort=False):
            style = dict(marker="o", ms=3, ls=dashes[line], color=colors[line], label=line)
            axes[0][col].plot(sub["step"], sub[memory_col] / 2**30, **style)
            axes[1][col].plot(sub["step"], sub["optimizer_bytes"] / 2**30, **style)
        axes[0][col].set_title(f"{model}: {memory_name}")
        axes[1][col].set_title(f"{model}: optimizer state")
        for ax in (axes[0][col], axes[1][col]):
            ax.set_xlabel("step (0 = warm-up)")
            integer_steps(ax)
            ax.set_ylabel("GiB")
    handles = [plt.Line2D([], [], color=c, marker="o", ms=3, ls=dashes[m], label=m) for m, c in colors.items()]
    axes[0][-1].legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return save(fig, path, caption)


def _method_of(log_path) -> str | None:
    metrics = Path(log_path).parent / "metrics.json"
    return json.loads(metrics.read_text()).get("method") if metrics.is_file() else None


def loss_curves(runs, path: Path, caption: str | None = None) -> list[Path]:
    """Training loss per step of every run (thin lines) and its held-out loss where measured (markers), each
    experiment in its own style (``experiment_style``); ``runs`` yields (model, experiment, seed, train_log path)."""
    runs = list(runs)
    several = len({m for m, *_ in runs}) > 1
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for model, exp, seed, log_path in runs:
        log = pd.read_json(log_path, lines=True)
        if not len(log):
            continue
        style = experiment_style(exp, _method_of(log_path))
        ax.plot(log["step"], log["loss"], color=style["color"], ls=style["linestyle"], lw=1,
                label=run_label(exp, model, seed, several))
        if "eval_loss" in log and log["eval_loss"].notna().any():
            held = log[log["eval_loss"].notna()]
            ax.plot(held["step"], held["eval_loss"], marker=style["marker"], ls="none", color=style["color"], ms=5)
    ax.set_xlabel("optimizer step")
    integer_steps(ax)
    ax.set_ylabel("loss (lines: training;\nmarkers: held-out)")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return save(fig, path, caption)


def blocks_heatmap(runs, path: Path, caption: str | None = None) -> list[Path] | None:
    """Which decoder blocks trained at each step, for the first run whose trainable set changes during the
    run (its log records ``active_layers``); None when no run does."""
    for model, exp, seed, log_path in runs:
        log = pd.read_json(log_path, lines=True)
        if not len(log) or "active_layers" not in log or log["active_layers"].isna().all():
            continue
        blocks = json.loads((Path(log_path).parent / "metrics.json").read_text())["decoder_blocks"]
        grid = [[1 if b in active else 0 for b in range(blocks)] for active in log["active_layers"]]
        fig, ax = plt.subplots(figsize=(6.5, 3.5))
        ax.imshow(pd.DataFrame(grid).T.values, aspect="auto", cmap="Greys", interpolation="nearest")
        ax.set_xlabel("step")
        integer_steps(ax)
        ax.set_ylabel("decoder block")
        ax.set_title(f"blocks trained by {exp} ({model}, seed {seed})")
        return save(fig, path, caption and f"{caption} The run shown: {exp} on {model}, seed {seed}.")
    return None


def mt_bench_categories(scores: pd.DataFrame, path: Path, methods: dict | None = None,
                        caption: str | None = None, intervals: pd.DataFrame | None = None) -> list[Path]:
    """Mean MT-Bench score per category (groups) of each experiment (bars in its own colour); ``scores``: one row
    per experiment (its index, or (model, experiment)), one column per category."""
    fig, ax = plt.subplots(figsize=(7.5, 4))
    rows = list(scores.index)
    width = 0.8 / max(1, len(rows))
    methods = figure_families([key[-1] if isinstance(key, tuple) else key for key in rows], methods)
    same_colour: dict = {}  # colour -> bars drawn in it so far: each of them gets its own hatch
    for i, key in enumerate(rows):
        exp = key[-1] if isinstance(key, tuple) else key
        style = experiment_style(exp, methods.get(exp))
        hatch = HATCHES[same_colour.get(style["color"], 0) % len(HATCHES)]
        same_colour[style["color"]] = same_colour.get(style["color"], 0) + 1
        label = " ".join(map(str, key[::-1])) if isinstance(key, tuple) and scores.index.nlevels > 1 and \
            len({k[0] for k in rows}) > 1 else exp
        errors = intervals.loc[key].reindex(scores.columns).fillna(0).values if intervals is not None and \
            key in intervals.index else None
        ax.bar([c + i * width - 0.4 + width / 2 for c in range(len(scores.columns))], scores.loc[key].values,
               width, color=style["color"], hatch=hatch, edgecolor="white", label=label,
               yerr=errors, error_kw={"lw": 0.8, "capsize": 2})
    ax.set_xticks(range(len(scores.columns)), scores.columns, rotation=30, ha="right")
    ax.set_ylabel("MT-Bench score (1-10)")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return save(fig, path, caption)


MARKERS = "osD^vP*Xph"
HATCHES = ("", "//", "..", "xx", "\\\\", "++")


def family_style(family: str) -> dict:
    """One colour and marker per method family in every figure of every study: taken from the family's name (a
    stable hash), so no figure needs to know the methods."""
    import zlib

    code = zlib.crc32(family.encode())
    return {"color": plt.get_cmap("tab10").colors[code % 10], "marker": MARKERS[(code // 10) % len(MARKERS)]}


LINESTYLES = ("-", "--", "-.", ":")


def experiment_style(experiment: str, family: str | None) -> dict:
    """An experiment's colour (its method family's, ``family_style``), marker and line style (a stable hash of its
    name), the same in every figure of every study; no family known: a colour of its own from the same hash."""
    import zlib

    code = zlib.crc32(experiment.encode())
    colour = family_style(family)["color"] if family else plt.get_cmap("tab10").colors[code % 10]
    return {"color": colour, "marker": MARKERS[code % len(MARKERS)],
            "linestyle": LINESTYLES[(code // len(MARKERS)) % len(LINESTYLES)]}


def figure_families(experiments, families: dict | None) -> dict:
    """The families to colour a figure's experiments by (``experiment_style``): none where they are all of one
    family, whose one colour would tell them apart from nothing; each then takes a colour of its own."""
    families = families or {}
    return families if len({families.get(e) for e in set(experiments)}) > 1 else {}


def colour_note(families) -> str:
    """What a figure's colours mean, for its caption (as ``figure_families`` colours it)."""
    families = sorted(set(families))
    return ("one colour per method family, one marker and line style per experiment" if len(families) > 1 else
            f"one colour, marker and line style per experiment (all of one method family, {', '.join(families)})")


def run_label(experiment: str, model: str, seed: int | None = None, several_models: bool = False) -> str:
    """A run's name in every legend: its experiment, the model where a figure holds several, the seed."""
    parts = ([model] if several_models else []) + ([f"seed {seed}"] if seed is not None else [])
    return f"{experiment} ({', '.join(parts)})" if parts else experiment


# where a point's label is tried, in order: (x offset in points, alignment, lines up (+) or down (-)): beside the
# point, right then left, then a line higher, a line lower, and so on
LABEL_PLACES = [(dx, ha, dy) for moved in range(41) for dy in ((0,) if moved == 0 else (moved, -moved))
                for dx, ha in ((5, "left"), (-5, "right"))]


def place_labels(ax, xs, ys, labels, fontsize: int = 8) -> None:
    """Label points so that no two labels overlap, and none covers another point or crosses the axes' frame where
    a place clear of them is near: each label is tried beside its point (right, then left), then moved up or down
    (in screen space) a line at a time, with a thin line back to its point if moved. Where no place near is clear
    of points and frame, the nearest clear of the other labels is taken."""
    import numpy as np
    from matplotlib.transforms import Bbox

    fig = ax.figure
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    half = 5 * fig.dpi / 72  # a point's marker, half its width in pixels
    centres = ax.transData.transform(np.column_stack([xs, ys])) if len(xs) else []
    dots = [Bbox.from_extents(x - half, y - half, x + half, y + half) for x, y in centres]
    placed = []
    order = sorted(range(len(labels)), key=lambda i: (ys[i], xs[i]))
    for i in order:
        text = ax.annotate(labels[i], (xs[i], ys[i]), xytext=(5, 4), textcoords="offset points", fontsize=fontsize)
        line = (text.get_window_extent(renderer).height + 1) * 72 / fig.dpi
        chosen = fallback = None
        for dx, ha, dy in LABEL_PLACES:
            text.set_position((dx, 4 + dy * line))
            text.set_horizontalalignment(ha)
            box = text.get_window_extent(renderer)
            if any(box.overlaps(other) for other in placed):
                continue
            fallback = fallback or (dx, ha, dy, box)
            inside = frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1
            if inside and not any(box.overlaps(dot) for j, dot in enumerate(dots) if j != i):
                chosen = (dx, ha, dy, box)
                break
        dx, ha, dy, box = chosen or fallback or (5, "left", 0, None)
        text.set_position((dx, 4 + dy * line))
        text.set_horizontalalignment(ha)
        if dy:
            ax.annotate("", (xs[i], ys[i]), xytext=text.get_position(), textcoords="offset points",
                        arrowprops={"arrowstyle": "-", "lw": 0.5, "color": "0.5"})
        placed.append(box or text.get_window_extent(renderer))


def score_vs_memory(runs: pd.DataFrame, path: Path, score: str = "overall",
                    label: str = "MT-Bench overall", caption: str = "", seeds: bool = True) -> list[Path]:
    """The figure a method is picked from: the final score against the measured peak memory (left) and the
    optimizer state (right). Every run (seed) is a small point, each experiment's mean a large one; one colour
    and marker per method family, whose means are joined in order of size (its frontier). ``runs``: one row per
    run with model, experiment, family (its method family), seed, peak_memory_MiB, optimizer_state_MiB and
    ``score``. The legend stands below the panels, clear of the points, and labels are placed once it is.
    ``seeds=False``: ``runs`` holds each experiment's mean only (a study whose per-run records were not kept), and
    no point is drawn, or named in the legend, as a seed."""
    runs = runs.dropna(subset=[score])
    fig, axes = plt.subplots(1, 2, figsize=(10, 5.4), sharey=True, layout="constrained")
    several = runs["model"].nunique() > 1
    panels = ((axes[0], "peak_memory_MiB", "measured peak training memory (MiB)"),
              (axes[1], "optimizer_state_MiB", "optimizer state (MiB, from the state tensors)"))
    for ax, x, xlabel in panels:
        size = "optimizer_state_MiB"  # a family's points are joined in order of its size, in both panels
        means = runs.groupby(["model", "family", "experiment"])[list(dict.fromkeys([x, size, score]))].mean() \
            .reset_index()
        for (model, family), sub in means.groupby(["model", "family"]):
            style = family_style(family)
            sub = sub.sort_values([size, x])
            ax.plot(sub[x], sub[score], "-", ms=8, lw=1.2, label=f"{family} ({model})" if several else family,
                    **style)
            own = runs[(runs["model"] == model) & (runs["family"] == family)]
            if seeds:
                ax.scatter(own[x], own[score], s=14, alpha=0.45, color=style["color"], marker=style["marker"])
        ax.margins(x=0.15, y=0.08)  # room for the labels of the outermost points
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(label)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=min(len(labels), 3), frameon=False,
               fontsize=readable_size(fig, 8), title_fontsize=readable_size(fig, 7),
               title="method family (large points: mean over seeds; small points: each seed)" if seeds else
               "method family (points: each experiment's mean over its seeds)")
    for ax, x, _ in panels:
        means = runs.groupby(["model", "family", "experiment"])[[x, score]].mean().reset_index()
        names = [f"{e} ({m})" if several else e for m, e in zip(means["model"], means["experiment"])]
        place_labels(ax, list(means[x]), list(means[score]), names, fontsize=readable_size(fig, 7))
    return save(fig, path, caption)


def learning_curves(points: pd.DataFrame, path: Path, machine: str, methods: dict | None = None,
                    caption: str | None = None) -> list[Path]:
    """Held-out loss against optimizer steps (left) and against training seconds (right), one line per
    experiment in its own style: the mean over seeds, with each seed's points faint behind it. ``points``:
    curves_table's rows; ``methods``: experiment -> method family (for the colours)."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    several = points["model"].nunique() > 1
    methods = figure_families(points["experiment"], methods)
    for (model, exp), sub in points.groupby(["model", "experiment"], sort=True):
        style = experiment_style(exp, methods.get(exp))
        mean = sub.groupby("step")[["seconds", "eval_loss"]].mean()
        seeds = sub["seed"].nunique()
        label = f"{run_label(exp, model, None, several)}, {seeds} seed{'s' if seeds > 1 else ''}"
        for ax, x in ((axes[0], mean.index), (axes[1], mean["seconds"])):
            ax.plot(x, mean["eval_loss"], marker=style["marker"], ms=4, color=style["color"], ls=style["linestyle"],
                    label=label)
        if seeds > 1:
            for _, run in sub.groupby("seed"):
                axes[0].plot(run["step"], run["eval_loss"], color=style["color"], alpha=0.25, lw=0.8)
                axes[1].plot(run["seconds"], run["eval_loss"], color=style["color"], alpha=0.25, lw=0.8)
    sizes = sorted(points["eval_examples"].dropna().astype(int).unique())
    held = f" ({'/'.join(map(str, sizes))} held-out examples)" if sizes else ""
    axes[0].set_ylabel("held-out loss" + held)
    axes[0].set_xlabel("optimizer step")
    integer_steps(axes[0])
    axes[1].set_xlabel(f"training seconds, each job's own\n(held-out passes excluded; {machine})")
    axes[1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return save(fig, path, caption)


def weight_norms(mean: pd.DataFrame, update: pd.DataFrame, path: Path, styles: dict | None = None,
                 caption: str | None = None) -> list[Path]:
    """Per unit from embedding to head: mean weight norm over training and update norm, one line per run
    (``styles``: run label -> (experiment, method family), for its colour and marker). Full fine-tuning and LISA
    train the same weights, so their norms coincide where LISA trained a unit: the later lines are drawn thinner
    and with their markers, so that one under another still shows. One legend, below both panels, names the runs
    of both."""
    rows = -(-len(mean.index) // 3)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.6 + 0.22 * rows), layout="constrained")
    style = {}
    known = {label: (styles or {}).get(label, (str(label).split(" (")[0], None)) for label in mean.index}
    families = figure_families([e for e, _ in known.values()], {e: f for e, f in known.values()})
    for label in mean.index:
        exp = known[label][0]
        own = experiment_style(exp, families.get(exp))
        style[label] = dict(color=own["color"], linestyle=own["linestyle"], marker=own["marker"], ms=3)
    # units a method left untouched (norm 0) are gaps on the log scale, not lines to -infinity
    for ax, df in ((ax1, mean), (ax2, update)):
        for i, (label, row) in enumerate(df.iterrows()):
            ax.plot(range(len(row)), row.where(row > 0).values, label=label, lw=max(0.8, 2.2 - 0.3 * i),
                    alpha=0.85, **style.get(label, {}))
    for ax, title in ((ax1, "mean trained-parameter norm over training\n(the paper's Figure 2; untrained units "
                             "blank)"),
                      (ax2, "update norm ||W_T - W_0||")):
        ticks = list(mean.columns)
        step = max(1, len(ticks) // 12)
        shown = list(range(0, len(ticks), step))
        shown[-1] = len(ticks) - 1  # the last unit (the head, or what follows the blocks) is named too
        ax.set_xticks(shown, [ticks[k] for k in shown], rotation=45, ha="right", fontsize=7)
        ax.set_yscale("log")
        ax.set_title(title, fontsize=10)
    handles, labels = ax1.get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=min(len(labels), 3), frameon=False,
               fontsize=readable_size(fig, 7))  # one legend for both panels, clear of their lines
    return save(fig, path, caption)


def lr_sweep(grid: pd.DataFrame, path: Path, methods: dict | None = None, caption: str | None = None) -> list[Path]:
    """Held-out loss against learning rate, one line per (model, experiment) in its own style; the chosen rate
    circled."""
    fig, ax = plt.subplots(figsize=(6.5, 4))
    several = grid["model"].nunique() > 1
    methods = figure_families(grid["experiment"], methods)
    for (model, exp), sub in grid.groupby(["model", "experiment"], sort=False):
        sub = sub.sort_values("lr")
        style = experiment_style(exp, methods.get(exp))
        ax.plot(sub["lr"], sub["eval_loss"], marker=style["marker"], color=style["color"], ls=style["linestyle"],
                label=run_label(exp, model, None, several))
        chosen = sub[sub["chosen"]]
        ax.scatter(chosen["lr"], chosen["eval_loss"], s=140, facecolors="none", edgecolors=style["color"])
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("held-out loss after the sweep's steps")
    ax.legend(fontsize=7, title="circled: the rate chosen", title_fontsize=7)
    return save(fig, path, caption)
