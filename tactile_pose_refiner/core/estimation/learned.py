"""Learned visuo-tactile estimator in the paper's spirit (DenseFusion-like, trained per object on
generated episodes): a PointNet over the segmented depth points (xyz + colour) and a second
stream over the tactile contact points; every depth point votes a pose (rotation in the 6-D
representation, an offset to the object's centroid) with a confidence. The most confident votes
are polished by the registration ICP and scored like the classical hypotheses; colour picks
among symmetric equivalents.

Training loss per vote: the mean distance of model points moved by the vote and by the truth
(ADD; for a geometrically symmetric object the distance to the nearest truth point, ADD-S),
weighted by the confidence with a log-barrier (DenseFusion's form). Training samples are
augmented by rotations about the camera centre, which keep what the camera sees consistent.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from scipy.spatial.transform import Rotation
from torch import nn

from tactile_pose_refiner.core.estimation import CheckpointError
from tactile_pose_refiner.core.estimation.base import RegisteringEstimator
from tactile_pose_refiner.core.estimation.inputs import EstimatorInputs
from tactile_pose_refiner.core.estimation.model_cloud import ModelCloud
from tactile_pose_refiner.core.resources import cache_dir
from tactile_pose_refiner.core.scene.assets import HandAssets

SCALE_M = 0.1  # network coordinates: decimetres about the depth points' centroid
CONFIDENCE_BARRIER = 0.015


def checkpoint_path(object_id: str, config: dict) -> Path:
    return cache_dir(config["checkpoint_dir"]) / f"{object_id}.pt"


class PoseNet(nn.Module):
    """Depth points (B, P, 6) + contacts (B, C, 3) with mask (B, C) -> per depth point:
    rotation 6-D (B, P, 6), centroid offset (B, P, 3), confidence logit (B, P)."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.points = _mlp(6, width // 2, width)
        self.contacts = _mlp(3, width // 2, width)
        self.head = nn.Sequential(_mlp(3 * width, 2 * width, width), nn.ReLU(), nn.Linear(width, 10))

    def forward(self, points: torch.Tensor, contacts: torch.Tensor, contact_mask: torch.Tensor):
        local = self.points(points)
        scene = local.max(dim=1).values
        touch = self.contacts(contacts).masked_fill(~contact_mask[..., None], -1e4).max(dim=1).values
        touch = torch.where(contact_mask.any(dim=1, keepdim=True), touch, torch.zeros_like(touch))
        context = torch.cat([scene, touch], dim=1)[:, None].expand(-1, local.shape[1], -1)
        out = self.head(torch.cat([local, context], dim=2))
        return out[..., :6], out[..., 6:9], out[..., 9]


def _mlp(*widths: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for a, b in zip(widths[:-1], widths[1:]):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers[:-1])


def rotation_from_6d(six: torch.Tensor) -> torch.Tensor:
    """Gram-Schmidt of two 3-vectors (Zhou et al. 2019) -> rotation matrices (..., 3, 3), columns."""
    a = nn.functional.normalize(six[..., :3], dim=-1)
    b = nn.functional.normalize(six[..., 3:] - (a * six[..., 3:]).sum(-1, keepdim=True) * a, dim=-1)
    return torch.stack([a, b, torch.cross(a, b, dim=-1)], dim=-1)


@dataclass
class Sample:
    """Network inputs of one frame: centred at `centre` (camera frame), turned into the depth
    points' principal axes `axes` (3, 3; columns in the camera frame) and scaled by SCALE_M."""

    points: np.ndarray  # (P, 6) xyz + rgb
    contacts: np.ndarray  # (C, 3), zero rows where contact_mask is False
    contact_mask: np.ndarray
    centre: np.ndarray
    axes: np.ndarray


def principal_axes(centred: np.ndarray) -> np.ndarray:
    """Right-handed principal axes (columns, largest spread first), each signed so that the
    points' third moment along it is positive: a canonical frame of the observed cloud, so the
    network learns the pose relative to what it sees rather than every camera-frame rotation."""
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    axes = vt.T.copy()
    for k in range(2):
        if np.mean((centred @ axes[:, k]) ** 3) < 0:
            axes[:, k] = -axes[:, k]
    axes[:, 2] = np.cross(axes[:, 0], axes[:, 1])
    return axes


def make_sample(
    inputs: EstimatorInputs,
    n_points: int,
    n_contacts: int,
    rng: np.random.Generator,
    rotation: np.ndarray | None = None,
) -> Sample:
    """Draw n_points depth points (with repeats when fewer) and up to n_contacts contacts;
    `rotation` (3, 3) turns the scene about the camera centre first (training augmentation)."""
    points, contacts = inputs.points, inputs.contacts
    if rotation is not None:
        points, contacts = points @ rotation.T, contacts @ rotation.T
    chosen = rng.choice(len(points), n_points, replace=len(points) < n_points)
    centre = points[chosen].mean(axis=0)
    axes = principal_axes(points[chosen] - centre)
    xyz = (points[chosen] - centre) @ axes / SCALE_M
    touch = np.zeros((n_contacts, 3))
    mask = np.zeros(n_contacts, dtype=bool)
    if len(contacts):
        picked = rng.permutation(len(contacts))[:n_contacts]
        touch[: len(picked)] = (contacts[picked] - centre) @ axes / SCALE_M
        mask[: len(picked)] = True
    return Sample(np.hstack([xyz, inputs.colours[chosen]]), touch, mask, centre, axes)


def batch(samples: list[Sample]) -> tuple[torch.Tensor, ...]:
    return (
        torch.as_tensor(np.stack([s.points for s in samples]), dtype=torch.float32),
        torch.as_tensor(np.stack([s.contacts for s in samples]), dtype=torch.float32),
        torch.as_tensor(np.stack([s.contact_mask for s in samples])),
    )


def votes(net: PoseNet, samples: list[Sample], cloud: ModelCloud) -> tuple[torch.Tensor, ...]:
    """Per depth point pose votes: R (B, P, 3, 3) and translation t (B, P, 3) of T_cam_obj about
    the centre in network units, camera axes; confidence (B, P) in 0..1. The network itself
    works in each sample's principal axes."""
    points, contacts, mask = batch(samples)
    six, offset, logit = net(points, contacts, mask)
    R = rotation_from_6d(six)
    centroid = points[..., :3] + offset  # where the model's centroid is
    model_centroid = torch.as_tensor(cloud.centroid / SCALE_M, dtype=torch.float32)
    t = centroid - torch.einsum("bpij,j->bpi", R, model_centroid)
    axes = torch.as_tensor(np.stack([s.axes for s in samples]), dtype=torch.float32)[:, None]
    return axes @ R, (axes @ t[..., None])[..., 0], torch.sigmoid(logit)


class LearnedEstimator(RegisteringEstimator):
    name = "learned"

    def __init__(self, cloud: ModelCloud, hand: HandAssets, config: dict, path: Path | None = None) -> None:
        super().__init__(cloud, hand, config, config["learned"]["polish_stages"])
        self.learned = config["learned"]
        self.path = path or checkpoint_path(cloud.object_id, self.learned)
        self.net = load_checkpoint(self.path, cloud.object_id, int(self.learned["width"]))

    def hypotheses(self, inputs: EstimatorInputs, seed: int) -> tuple[list[np.ndarray], dict]:
        network_T, hypotheses, network_confidence = network_poses(self.net, self.cloud, self.learned, inputs, seed)
        return hypotheses, {"network_confidence": network_confidence, "network_T": network_T}


def network_poses(
    net: PoseNet, cloud: ModelCloud, learned: dict, inputs: EstimatorInputs, seed: int
) -> tuple[np.ndarray, list[np.ndarray], float]:
    """The confidence-weighted pose (T_cam_obj), the hypotheses (it, then the `top_votes` most
    confident single votes) and the mean confidence."""
    sample = make_sample(inputs, int(learned["points"]), int(learned["contacts"]), np.random.default_rng(seed))
    with torch.no_grad():
        R, t, confidence = (x[0].double().numpy() for x in votes(net, [sample], cloud))
    weights = confidence / confidence.sum()
    mean_R = Rotation.from_matrix(R).mean(weights).as_matrix()
    poses = [_pose(mean_R, weights @ t, sample.centre)]
    for index in np.argsort(-confidence)[: int(learned["top_votes"])]:
        poses.append(_pose(R[index], t[index], sample.centre))
    if learned.get("axis_flips"):
        poses += [flip @ T for T in poses for flip in _half_turns(sample.axes, sample.centre)]
    return poses[0], poses, float(confidence.mean())


def _half_turns(axes: np.ndarray, centre: np.ndarray) -> list[np.ndarray]:
    """Half turns about each principal axis through the centre: the third-moment sign of an
    axis is a weak cue on a near-symmetric view, and a flipped frame flips the network's pose."""
    turns = []
    for k in range(3):
        turn = np.eye(4)
        turn[:3, :3] = 2.0 * np.outer(axes[:, k], axes[:, k]) - np.eye(3)  # rotation by pi
        turn[:3, 3] = centre - turn[:3, :3] @ centre
        turns.append(turn)
    return turns


def _pose(R: np.ndarray, t: np.ndarray, centre: np.ndarray) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3] = R
    T[:3, 3] = t * SCALE_M + centre
    return T


def load_checkpoint(path: Path, object_id: str, width: int) -> PoseNet:
    if not path.is_file():
        raise CheckpointError(
            f"no learned estimator for {object_id} at {path}; train one with: tpr train-estimator --object {object_id}"
        )
    state = torch.load(path, map_location="cpu", weights_only=True)
    if state.get("object_id") != object_id:
        raise CheckpointError(f"{path} was trained for {state.get('object_id')!r}, not {object_id!r}")
    net = PoseNet(int(state.get("width", width)))
    net.load_state_dict(state["weights"])
    return net.eval()
