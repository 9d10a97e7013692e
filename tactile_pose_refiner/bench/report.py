"""`tpr bench --report DIR`: plots and overlay images of a benchmark run.

- convergence_<noise>.png: mean PE and OE over the refiner's iterations (every refined method),
  plus the iterations sweep (ours@N) against N when one ran.
- per_object_<noise>.png: |dIV| and PE per object and method (one object too).
- overlay_<noise>_<episode>_<frame>.png: the object's contour at the initial (red), refined
  ('ours', green, drawn wide) and ground-truth (blue, thin, on top) pose on the frame's RGB
  image, cropped around the object, with a legend and the frame's PE / OE before and after.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt
import numpy as np

from tactile_pose_refiner.core.resources import load_config

# (row key, outline, width px): refined as a ring under a thin truth, both visible where they agree
OUTLINES = (("T_initial", "initial", 1), ("T", "refined", 3), ("T_gt", "truth", 1))


def write_report(folder: Path, records: list[dict], summary: dict, methods: list[str]) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for noise in summary:
        rows = [r for r in records if r["noise"] == noise]
        written += [
            _convergence(folder, noise, rows, summary[noise]),
            _per_object(folder, noise, summary[noise], methods, rows),
        ]
        written += _overlays(folder, noise, rows)
    return [path for path in written if path is not None]


def _convergence(folder: Path, noise: str, rows: list[dict], summary: dict) -> Path | None:
    traces = defaultdict(list)
    for r in rows:
        if r.get("trace"):
            traces[r["method"]].append(np.array(r["trace"]))
    sweep = sorted(
        ((int(m.partition("@")[2]), s) for m, s in summary.items() if m.startswith("ours@")), key=lambda item: item[0]
    )
    if not traces and not sweep:
        return None
    figure, axes = plt.subplots(1, 4 if sweep else 3, figsize=(20 if sweep else 15, 4))
    for method, runs in sorted(traces.items()):
        length = max(len(run) for run in runs)
        # a run that stopped early holds its last pose for the remaining iterations
        padded = np.stack([np.vstack([run, np.repeat(run[-1:], length - len(run), axis=0)]) for run in runs])
        for axis, column, label in zip(axes, range(padded.shape[2]), ("PE [cm]", "OE [deg]", "IV [cm3]")):
            axis.plot(np.arange(1, length + 1), padded[:, :, column].mean(axis=0), label=method)
            axis.set_xlabel("iteration (last iterate, before checkpointing)")
            axis.set_ylabel(f"mean {label}")
    truth_iv = [r["truth"]["iv_cm3"] for r in rows if r["method"] in traces and "truth" in r]
    if truth_iv:
        axes[2].axhline(np.mean(truth_iv), color="k", linestyle="--", lw=1, label="ground truth")
        axes[2].legend(fontsize=7)
    axes[0].legend(fontsize=7)
    if sweep:
        n = [k for k, _ in sweep]
        for metric, label in (("div_cm3", "|dIV| [cm3]"), ("pe_cm", "PE [cm]")):
            axes[3].plot(n, [s[metric] for _, s in sweep], marker="o", label=label)
        axes[3].set_xscale("log")
        axes[3].set_xlabel("iterations N (ours@N)")
        axes[3].legend()
    return _save(figure, folder / f"convergence_{noise}.png", f"refinement vs iterations, noise {noise}")


def _per_object(folder: Path, noise: str, summary: dict, methods: list[str], rows: list[dict]) -> Path | None:
    single = sorted({r["object"] for r in rows})
    summary = {  # one object: its summary is the method's whole one
        m: s if "per_object" in s or len(single) != 1 else {**s, "per_object": {single[0]: s}}
        for m, s in summary.items()
    }
    shown = [m for m in methods if m in summary and "per_object" in summary[m]]
    if not shown:
        return None
    objects = sorted(summary[shown[0]]["per_object"])
    figure, axes = plt.subplots(2, 1, figsize=(max(8, len(objects) * 1.3), 8))
    width = 0.8 / len(shown)
    x = np.arange(len(objects))
    for k, method in enumerate(shown):
        per_object = summary[method]["per_object"]
        for axis, metric in ((axes[0], "div_cm3"), (axes[1], "pe_cm")):
            axis.bar(x + k * width, [per_object.get(o, {}).get(metric, np.nan) for o in objects], width, label=method)
    for axis, label in ((axes[0], "|dIV| [cm3]"), (axes[1], "PE [cm]")):
        axis.set_xticks(x + 0.4 - width / 2, [o.split("_", 1)[1] for o in objects], rotation=20, fontsize=8)
        axis.set_ylabel(label)
        axis.set_yscale("symlog", linthresh=0.1)
    axes[0].legend(fontsize=7, ncol=min(len(shown), 5))
    return _save(figure, folder / f"per_object_{noise}.png", f"per object, noise {noise}")


def _save(figure, path: Path, title: str) -> Path:
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def _overlays(folder: Path, noise: str, rows: list[dict]) -> list[Path]:
    """Contours at the initial / refined ('ours', else the last method) / true pose on RGB."""
    from tactile_pose_refiner.core.scene.objects import ObjectCatalog
    from tactile_pose_refiner.io.episode_bag import read_episode

    limit = int(load_config("bench")["overlay"]["max_frames"])
    refined = {}
    for r in rows:
        if r["method"].partition("@")[0] == "ours" or (
            r["method"] != "initial" and (r["episode"], r["frame"]) not in refined
        ):
            refined[(r["episode"], r["frame"])] = r
    chosen = defaultdict(list)
    for (episode, index), r in sorted(refined.items()):
        if len(chosen[episode]) < limit:
            chosen[episode].append((index, r))
    if not chosen:
        return []
    catalog = ObjectCatalog.from_config()
    paths = []
    for episode, wanted in chosen.items():
        source = _episode_path(rows, episode)
        frames = dict(wanted)
        for index, frame in enumerate(read_episode(source)) if source else []:
            if index not in frames:
                continue
            path = folder / f"overlay_{noise}_{episode}_{index:03d}_{frames[index]['method']}.png"
            paths.append(_overlay(path, frame, frames[index], catalog.load(frame.object_id)))
    return paths


def _overlay(path: Path, frame, row: dict, model) -> Path:
    """Initial, then refined (a 3 px ring), then truth (1 px) on top: where the refined pose
    sits on the truth both stay visible (blue inside green); cropped to the contours."""
    from matplotlib.lines import Line2D

    from tactile_pose_refiner.core.metrics import orientation_error_deg, position_error_cm
    from tactile_pose_refiner.core.overlay import OUTLINE_COLOURS, draw_outlines

    outlines = [(np.array(row[key]), name, width) for key, name, width in OUTLINES]
    image, drawn = draw_outlines(frame.rgb, model, frame.camera, outlines)
    rows, cols = np.nonzero(drawn) if drawn.any() else (np.arange(image.shape[0]), np.arange(image.shape[1]))
    margin = 30
    crop = image[
        max(0, rows.min() - margin) : rows.max() + margin + 1, max(0, cols.min() - margin) : cols.max() + margin + 1
    ]
    T_gt = np.array(row["T_gt"])
    numbers = []
    for label, key in (("initial", "T_initial"), (row["method"], "T")):
        T = np.array(row[key])
        numbers.append(f"{label} PE {position_error_cm(T, T_gt):.2f} cm, OE {orientation_error_deg(T, T_gt):.1f} deg")
    figure, axis = plt.subplots(figsize=(6, 6 * crop.shape[0] / max(crop.shape[1], 1) + 0.8))
    axis.imshow(crop)
    axis.set_axis_off()
    handles = [Line2D([], [], color=np.array(OUTLINE_COLOURS[k]) / 255, lw=2, label=k) for _, k, _ in OUTLINES]
    axis.legend(handles=handles, loc="upper right", fontsize=8, framealpha=0.8)
    axis.set_title("\n".join(numbers), fontsize=9)
    figure.suptitle(f"{frame.object_id}, frame {row['frame']}", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def _episode_path(rows: list[dict], episode: str) -> Path | None:
    for r in rows:
        if r["episode"] == episode and r.get("episode_path"):
            return Path(r["episode_path"])
    return None
