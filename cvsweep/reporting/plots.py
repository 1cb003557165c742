"""Plots, drawn here from recorded data (result.json, the Optuna study), never on a worker:
a remote trial's folder looks exactly like a local one's. Headless (matplotlib's Agg).

Never inside a trial (a trial's plots take seconds to draw, several times a tiny trial's
runner overhead): a sweep draws its top trials' plots when it ends (cvsweep/reporting/summary.py, chosen by
cvsweep/study/ranking.py),
a single run at its end (cvsweep/cli/hydra_app.py), any trial on demand (``cvsweep plot``)."""

from __future__ import annotations

import logging
import warnings
from contextlib import contextmanager
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from cvsweep.jsonio import read_json, replaced_atomically  # noqa: E402
from cvsweep.layout import TRIAL_PLOTS, result_of  # noqa: E402

log = logging.getLogger("cvsweep.plots")
logging.getLogger("matplotlib").setLevel(logging.WARNING)  # its INFO notes are not for users



def plot_trial_folders(folders: list[Path]) -> list[Path]:
    """Each trial folder's plots, from its result.json. A folder whose plots cannot be drawn
    gets a warning and the others are still drawn: a plot never costs a run its results.

    Args:
        folders: Trial folders.

    Returns:
        The plot files drawn.
    """
    drawn = []
    for folder in folders:
        try:
            drawn += plot_trial(read_json(result_of(folder)), folder)
        except Exception as err:
            log.warning("could not draw the plots of %s: %s", folder, err)
    return drawn


def plot_trial(result: dict, folder: Path) -> list[Path]:
    """The trial's plots that its data allows (a failed run may have a history only).

    Args:
        result: The trial's result.json content.
        folder: Where the plots go (beside its result.json).

    Returns:
        The plot files drawn.
    """
    folder = Path(folder)
    drawn = []
    history = result.get("metrics", {}).get("history")
    diagnostics = result.get("diagnostics")
    makers = [("history.png", _history, history)]
    if diagnostics:
        makers += [
            ("confusion.png", _confusion, diagnostics),
            ("gradients.png", _gradients, (diagnostics, result["config"]["health"])),
            ("weights.png", _weights, diagnostics),
            ("activations.png", _activations, diagnostics),
        ]
    for name, draw, data in makers:
        if not data:
            continue
        figure = draw(data)
        if figure is None:
            continue
        drawn.append(_save(figure, folder / name))
    return drawn


def _figure(*args, **kwargs):
    return plt.subplots(*args, layout="constrained", **kwargs)


def _save(figure, path: Path) -> Path:
    with replaced_atomically(path) as tmp:
        figure.savefig(tmp, dpi=90, format=path.suffix.lstrip("."))
    plt.close(figure)
    return path


def _history(history: dict):
    figure, axes = _figure(1, 2, figsize=(10, 3.8))
    for ax, metric in zip(axes, ("loss", "accuracy")):
        for prefix, style in (("", "-"), ("val_", "--")):
            values = history.get(prefix + metric)
            if values:
                epochs = range(1, len(values) + 1)
                ax.plot(epochs, [np.nan if v is None else v for v in values], style, marker="o", ms=3,
                        label="validation" if prefix else "train")
        ax.set(title=metric, xlabel="epoch")
        ax.legend()
        ax.grid(alpha=0.3)
    return figure


def _confusion(diagnostics: dict):
    matrix = np.array(diagnostics["confusion_matrix"])
    per_class = diagnostics["per_class"]
    classes = np.arange(len(matrix))
    figure, (left, right) = _figure(1, 2, figsize=(11, 4.5), gridspec_kw={"width_ratios": [1.1, 1]})
    image = left.imshow(matrix, cmap="Blues")
    figure.colorbar(image, ax=left, fraction=0.046)
    left.set(title="confusion matrix (validation)", xlabel="predicted", ylabel="true")
    if len(classes) <= 20:
        left.set(xticks=classes, yticks=classes)
        for (i, j), count in np.ndenumerate(matrix):
            left.text(j, i, count, ha="center", va="center", fontsize=7,
                      color="white" if count > matrix.max() / 2 else "black")
    width = 0.4
    right.bar(classes - width / 2, per_class["precision"], width, label="precision")
    right.bar(classes + width / 2, per_class["recall"], width, label="recall")
    right.set(title="per class", xlabel="class", ylim=(0, 1.05))
    right.legend(loc="lower right")
    return figure


def _gradients(data):
    diagnostics, health = data
    norms = diagnostics["gradient_norms"]
    figure, ax = _figure(figsize=(8, 4.2))
    for layer, values in norms.items():
        ax.plot(range(1, len(values) + 1), [np.nan if v is None else max(v, 1e-12) for v in values], marker="o", ms=3, label=layer)
    ax.set_yscale("log")
    low, high = health["grad_vanishing_below"], health["grad_exploding_above"]
    ax.axhspan(1e-12, low, color="tab:blue", alpha=0.08, label=f"vanishing (< {low:g})")
    ax.axhspan(high, max(high * 100, 1e3), color="tab:red", alpha=0.08, label=f"exploding (> {high:g})")
    ax.set(title="gradient flow: per-layer gradient norm at each epoch end", xlabel="epoch", ylabel="L2 norm")
    ax.legend(fontsize=7, ncol=2)
    return figure


def _weights(diagnostics: dict):
    histograms = diagnostics["weight_histograms"]
    changes = diagnostics["relative_change"]
    layers = list(histograms)
    if not layers:
        return None
    figure, axes = _figure(2, len(layers), figsize=(3.2 * len(layers), 5.6), squeeze=False)
    for column, layer in enumerate(layers):
        top, bottom = axes[0][column], axes[1][column]
        for part, color in (("kernel", "tab:blue"), ("bias", "tab:orange")):
            hist = histograms[layer].get(part)
            if hist:
                edges = np.array(hist["edges"])
                top.stairs(hist["counts"], edges, fill=True, alpha=0.5, color=color, label=part)
            series = changes.get(layer, {}).get(part)
            if series:
                bottom.plot(range(1, len(series) + 1), [np.nan if not v else v for v in series],
                            marker="o", ms=3, color=color, label=part)
        top.set_title(f"{layer}: final distribution", fontsize=9)
        top.legend(fontsize=7)
        bottom.set_yscale("log")
        bottom.set_title("change per epoch (kernel: relative, bias: RMS)", fontsize=8)
        bottom.set_xlabel("epoch")
        bottom.legend(fontsize=7)
    return figure


# Frames of flagged channels in activations.png.
DEAD_COLOR, SATURATED_COLOR = "red", "darkorange"


def _activations(diagnostics: dict):
    """Each conv layer's maps, a row per image (its input first); dead channels framed red,
    saturated ones orange, and each layer's counts over all its channels beside it."""
    activations = diagnostics["activations"]
    layers, inputs = _conv_maps(activations)
    rows = [(layer, i) for layer in layers for i in range(len(layer["images"]))]
    if not rows:
        return None
    columns = 1 + max(len(layer["channels"]) for layer in layers)
    figure, axes = _figure(len(rows), columns, figsize=(1.3 * columns, 1.5 * len(rows)), squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    for row, (layer, i) in enumerate(rows):
        first = axes[row][0]
        first.set_axis_on()
        first.imshow(np.array(inputs[i], dtype=np.uint8), cmap="gray")
        first.set(xticks=[], yticks=[])
        if i == 0:
            first.set_ylabel(f"{layer['layer']}\n{len(layer['dead'])} dead, {len(layer['saturated'])} sat.\n"
                             f"of {layer['units']}", fontsize=7, color=DEAD_COLOR if layer["dead"] else "black")
        for column, (channel, image) in enumerate(zip(layer["channels"], layer["images"][i]), start=1):
            ax = axes[row][column]
            ax.set_axis_on()
            ax.imshow(np.array(image, dtype=np.uint8), cmap="viridis", vmin=0, vmax=255)
            ax.set(xticks=[], yticks=[])
            flag, color = (("dead", DEAD_COLOR) if channel in layer["dead"] else
                           ("sat.", SATURATED_COLOR) if channel in layer["saturated"] else ("", None))
            if color:
                for spine in ax.spines.values():
                    spine.set(color=color, linewidth=2.5)
            if i == 0:
                ax.set_title(f"ch {channel} {flag}".strip(), fontsize=7, color=color or "black")
    figure.suptitle("activation maps of every conv layer (dead: never active, red; saturated: stuck, orange)",
                    fontsize=9)
    return figure


def _conv_maps(activations: dict) -> tuple[list[dict], list]:
    """The per-layer maps and their input images; a result.json from before per-layer maps
    held the first conv layer's only, as [{"image", "channels"}] per image, without flags."""
    maps = activations.get("maps") or []
    if maps and "image" in maps[0]:
        old = {"layer": "first conv layer", "units": len(maps[0]["channels"]), "dead": [], "saturated": [],
               "channels": list(range(len(maps[0]["channels"]))), "images": [m["channels"] for m in maps]}
        return [old], [m["image"] for m in maps]
    return maps, activations.get("inputs") or []


def plot_study(study, folder: Path, n_objectives: int, objective_names: list[str]) -> list[Path]:
    """Optuna's own matplotlib plots of the whole study, each skipped with a warning when the
    study cannot support it yet (too few completed trials, one parameter...).

    Args:
        study: The ``optuna.Study``.
        folder: The sweep folder, where the plots go.
        n_objectives: How many objectives; with several, the first is plotted and the Pareto
            front is drawn too.
        objective_names: The objectives' names, for the axes.

    Returns:
        The plot files drawn.
    """
    from optuna.visualization import matplotlib as optuna_plots

    target = (lambda t: t.values[0]) if n_objectives > 1 else None
    name = objective_names[0]
    makers = {
        "optimization_history.png": lambda: optuna_plots.plot_optimization_history(study, target=target, target_name=name),
        "param_importances.png": lambda: optuna_plots.plot_param_importances(study, target=target, target_name=name),
        "parallel_coordinate.png": lambda: optuna_plots.plot_parallel_coordinate(study, target=target, target_name=name),
        "slice.png": lambda: optuna_plots.plot_slice(study, target=target, target_name=name),
    }
    if n_objectives > 1:
        makers["pareto_front.png"] = lambda: optuna_plots.plot_pareto_front(study, target_names=objective_names)
    drawn = []
    for filename, make in makers.items():
        try:
            with _quiet_optuna_plots():
                axes = make()
        except Exception as err:  # Optuna refuses plots its data cannot support yet
            log.warning("no %s: %s", filename, err)
            continue
        panels = np.ravel(axes) if isinstance(axes, np.ndarray) else [axes]
        figure = panels[0].get_figure()
        # One panel per parameter (slice): give each a readable width.
        figure.set_size_inches(max(figure.get_size_inches()[0], 9, 2.6 * len(panels)), max(figure.get_size_inches()[1], 5))
        drawn.append(_save(figure, Path(folder) / filename))
    return drawn


@contextmanager
def _quiet_optuna_plots():
    """Optuna's plots are experimental, and on a small study (two trials, a parameter with one
    value) matplotlib warns about the axis limits Optuna sets ("Attempting to set identical
    low and high ylims") and empty legends: notes about drawing that no user can act on."""
    import optuna

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
        warnings.filterwarnings("ignore", category=UserWarning, module=r"optuna\.(visualization|importance)\.")
        yield
