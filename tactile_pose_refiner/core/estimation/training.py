"""Training of the learned estimator on generated episodes (`tpr train-estimator`), CPU-sized.

Training frames come from the episode generator with seeds 1000 + k (the benchmark's episodes use
other seeds) or from recorded episodes; the last tenth of the episodes is held out and its mean
ADD(-S) is reported. The checkpoint holds the weights, the object id and the width (~0.3 MB).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from scipy.spatial.transform import Rotation
from tqdm import tqdm

from tactile_pose_refiner.core.estimation.inputs import EstimatorInputs, estimator_inputs
from tactile_pose_refiner.core.estimation.learned import (
    CONFIDENCE_BARRIER,
    SCALE_M,
    PoseNet,
    make_sample,
    network_poses,
    votes,
)
from tactile_pose_refiner.core.estimation.model_cloud import ModelCloud
from tactile_pose_refiner.core.frame import Frame
from tactile_pose_refiner.core.scene.assets import HandAssets

TRAINING_SEED_BASE = 1000
LOSS_VOTES = 128  # votes per sample that enter the loss (memory of ADD-S)
LOSS_MODEL_POINTS = 64


@dataclass
class Example:
    inputs: EstimatorInputs
    T_gt: np.ndarray
    episode: int


def examples(frames: Iterable[tuple[int, Frame]], hand: HandAssets, config: dict, total: int) -> list[Example]:
    found = []
    for episode, frame in tqdm(frames, total=total, unit="frame", desc="training frames"):
        inputs = estimator_inputs(frame, hand, config["inputs"])
        if frame.T_cam_obj is not None and len(inputs.points) >= int(config["inputs"]["min_observed_points"]):
            found.append(Example(inputs, frame.T_cam_obj, episode))
    return found


def train(cloud: ModelCloud, found: list[Example], config: dict, out: Path) -> dict:
    """Train, save the checkpoint at `out`, return a summary (sizes, time, loss per epoch,
    held-out ADD(-S))."""
    learned, options = config["learned"], config["learned"]["train"]
    torch.manual_seed(int(options["seed"]))
    rng = np.random.default_rng(int(options["seed"]))
    episodes = sorted({e.episode for e in found})
    held = set(episodes[-max(1, len(episodes) // 10) :]) if len(episodes) > 1 else set()
    training = [e for e in found if e.episode not in held] or found
    validation = [e for e in found if e.episode in held]
    net = PoseNet(int(learned["width"]))
    optimiser = torch.optim.Adam(net.parameters(), lr=float(options["learning_rate"]))
    epochs, size = int(options["epochs"]), int(options["batch"])
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, epochs)
    started = time.perf_counter()
    progress = tqdm(range(epochs), unit="epoch", desc=f"train {cloud.object_id}")
    history = []
    for _ in progress:
        order = rng.permutation(len(training))
        losses = []
        for start in range(0, len(order), size):
            chosen = [training[i] for i in order[start : start + size]]
            loss = _batch_loss(net, cloud, chosen, learned, rng, augment=float(options["augment_rotation_deg"]))
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            losses.append(loss.item())
        schedule.step()
        history.append(float(np.mean(losses)))
        progress.set_postfix(loss=f"{history[-1]:.3f}")
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"object_id": cloud.object_id, "width": int(learned["width"]), "weights": net.state_dict()}, out)
    return {
        "object": cloud.object_id,
        "train_frames": len(training),
        "held_out_frames": len(validation),
        "seconds": time.perf_counter() - started,
        "checkpoint": str(out),
        "checkpoint_kb": out.stat().st_size / 1024.0,
        "losses": history,
        "held_out_add_cm": _held_out_add_cm(net.eval(), cloud, validation, learned),
    }


def _batch_loss(
    net: PoseNet, cloud: ModelCloud, chosen: list[Example], learned: dict, rng: np.random.Generator, augment: float
) -> torch.Tensor:
    samples, truths = [], []
    for example in chosen:
        angle = np.radians(augment) * rng.uniform() ** (1.0 / 3.0)  # uniform in the ball
        turn = Rotation.from_rotvec(angle * _unit(rng.normal(size=3))).as_matrix()
        sample = make_sample(example.inputs, int(learned["points"]), int(learned["contacts"]), rng, turn)
        T = example.T_gt.copy()
        T[:3, :3], T[:3, 3] = turn @ T[:3, :3], (turn @ T[:3, 3] - sample.centre) / SCALE_M
        samples.append(sample)
        truths.append(T)
    R, t, confidence = votes(net, samples, cloud)
    picked = torch.as_tensor(rng.choice(R.shape[1], LOSS_VOTES, replace=False))
    R, t, confidence = R[:, picked], t[:, picked], confidence[:, picked]
    distance = _add(R, t, torch.as_tensor(np.stack(truths), dtype=torch.float32), cloud, rng)
    return (distance * confidence - CONFIDENCE_BARRIER * torch.log(confidence + 1e-6)).mean()


def _add(
    R: torch.Tensor, t: torch.Tensor, truth: torch.Tensor, cloud: ModelCloud, rng: np.random.Generator
) -> torch.Tensor:
    """(B, V) mean distance of model points moved by each vote and by the truth (network units);
    for a symmetric object the distance to the nearest truth point (ADD-S)."""
    model = torch.as_tensor(
        cloud.points[rng.choice(len(cloud.points), LOSS_MODEL_POINTS, replace=False)] / SCALE_M, dtype=torch.float32
    )
    predicted = torch.einsum("bvij,mj->bvmi", R, model) + t[:, :, None]
    expected = torch.einsum("bij,mj->bmi", truth[:, :3, :3], model) + truth[:, None, :3, 3]
    if not cloud.symmetric:
        return (predicted - expected[:, None]).norm(dim=-1).mean(dim=-1)
    B, V, M, _ = predicted.shape
    nearest = torch.cdist(predicted.reshape(B, V * M, 3), expected).min(dim=-1).values
    return nearest.reshape(B, V, M).mean(dim=-1)


def _held_out_add_cm(net: PoseNet, cloud: ModelCloud, validation: list[Example], learned: dict) -> float | None:
    """Mean ADD(-S) of the confidence-weighted network pose (before polishing) on held-out frames."""
    if not validation:
        return None
    errors = []
    rng = np.random.default_rng(0)
    for example in validation:
        T, _, _ = network_poses(net, cloud, learned, example.inputs, 0)
        R = torch.as_tensor(T[:3, :3], dtype=torch.float32)[None, None]
        t = torch.as_tensor(T[:3, 3] / SCALE_M, dtype=torch.float32)[None, None]
        truth = torch.as_tensor(example.T_gt, dtype=torch.float32).clone()
        truth[:3, 3] /= SCALE_M
        errors.append(float(_add(R, t, truth[None], cloud, rng)) * SCALE_M * 100.0)
    return float(np.mean(errors))


def _unit(vector: np.ndarray) -> np.ndarray:
    return vector / np.linalg.norm(vector)
