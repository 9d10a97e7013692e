"""`tpr bench --report DIR`: plots and overlay images of a benchmark run.

- convergence_<noise>.png: mean PE and OE over the refiner's iterations (every refined method),
  plus the iterations sweep (ours@N) against N when one ran.
- per_object_<noise>.png: |dIV| and PE per object and method.
- overlay_<noise>_<episode>_<frame>.png: the object's contour at the initial (red), refined
  ('ours', green) and ground-truth (blue) pose drawn on the frame's RGB image.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt
import numpy as np
from PIL import Image
from scipy.ndimage import binary_dilation

from tactile_pose_refiner.core.resources import load_config

COLOURS = {"initial": (230, 40, 40), "refined": (40, 220, 60), "truth": (60, 120, 255)}


def write_report(folder: Path, records: list[dict], summary: dict, methods: list[str]) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for noise in summary:
        rows = [r for r in records if r["noise"] == noise]
        written += [
            _convergence(folder, noise, rows, summary[noise]),
            _per_object(folder, noise, summary[noise], methods),
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
    figure, axes = plt.subplots(1, 3 if sweep else 2, figsize=(15 if sweep else 10, 4))
    for method, runs in sorted(traces.items()):
        length = max(len(run) for run in runs)
        # a run that stopped early holds its last pose for the remaining iterations
        padded = np.stack([np.vstack([run, np.repeat(run[-1:], length - len(run), axis=0)]) for run in runs])
        for axis, column, label in ((axes[0], 0, "PE [cm]"), (axes[1], 1, "OE [deg]")):
            axis.plot(np.arange(1, length + 1), padded[:, :, column].mean(axis=0), label=method)
            axis.set_xlabel("iteration (last iterate, before checkpointing)")
            axis.set_ylabel(f"mean {label}")
    axes[0].legend(fontsize=7)
    if sweep:
        n = [k for k, _ in sweep]
        for metric, label in (("div_cm3", "|dIV| [cm3]"), ("pe_cm", "PE [cm]")):
            axes[2].plot(n, [s[metric] for _, s in sweep], marker="o", label=label)
        axes[2].set_xscale("log")
        axes[2].set_xlabel("iterations N (ours@N)")
        axes[2].legend()
    return _save(figure, folder / f"convergence_{noise}.png", f"refinement vs iterations, noise {noise}")


def _per_object(folder: Path, noise: str, summary: dict, methods: list[str]) -> Path | None:
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
    from tactile_pose_refiner.core.scene.camera import PinholeCamera
    from tactile_pose_refiner.core.scene.objects import ObjectCatalog
    from tactile_pose_refiner.io.episode_bag import read_episode
    from tactile_pose_refiner.sim.render import RaycastRenderer

    limit = int(load_config("bench")["overlay"]["max_frames"])
    refined = {}
    for r in rows:
        if r["method"] == "ours" or (r["method"] != "initial" and (r["episode"], r["frame"]) not in refined):
            refined[(r["episode"], r["frame"])] = r
    chosen = defaultdict(list)
    for (episode, index), r in sorted(refined.items()):
        if len(chosen[episode]) < limit:
            chosen[episode].append((index, r))
    if not chosen:
        return []
    renderer = RaycastRenderer(PinholeCamera.from_config())
    catalog = ObjectCatalog.from_config()
    paths = []
    for episode, wanted in chosen.items():
        source = _episode_path(rows, episode)
        frames = dict(wanted)
        for index, frame in enumerate(read_episode(source)) if source else []:
            if index not in frames:
                continue
            r = frames[index]
            model = catalog.load(frame.object_id)
            image = frame.rgb.copy()
            for key, pose in (("truth", r["T_gt"]), ("initial", r["T_initial"]), ("refined", r["T"])):
                mask = renderer.render(model, np.array(pose), []).object_full_mask
                edge = binary_dilation(mask, iterations=1) & ~mask
                image[edge] = COLOURS[key]
            path = folder / f"overlay_{noise}_{episode}_{index:03d}_{r['method']}.png"
            Image.fromarray(image).save(path)
            paths.append(path)
    return paths


def _episode_path(rows: list[dict], episode: str) -> Path | None:
    for r in rows:
        if r["episode"] == episode and r.get("episode_path"):
            return Path(r["episode_path"])
    return None
