"""The hand's transform tree as tf2 expects it: one edge per URDF joint (parent link -> child
link), the camera -> hand base edge on top, frame names with an optional prefix (the vendor's
driver names its frames `ah_base_link`, `ah_link_00`, ...).

tf2 rejects a transform whose parent is its child and keeps one parent per frame; RViz places a
link only where a chain of transforms reaches it from the fixed frame. `tree_problems` checks all
three, so a node's tree is tested without a running tf2.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tactile_pose_refiner.core.geometry import invert
from tactile_pose_refiner.core.scene.kinematics import HandKinematics, renamed_urdf


@dataclass(frozen=True)
class Edge:
    parent: str
    child: str
    T: np.ndarray  # (4, 4) T_parent_child


def hand_edges(kinematics: HandKinematics, q: np.ndarray, prefix: str = "") -> list[Edge]:
    """The URDF's chain at joint positions q: one edge per joint, parent link -> child link."""
    poses = kinematics.link_poses(q)
    return [
        Edge(prefix + joint.parent, prefix + joint.child, invert(poses[joint.parent]) @ poses[joint.child])
        for joint in kinematics.joints
    ]


def tree_problems(edges: list[Edge], root: str) -> list[str]:
    """What tf2 or RViz would object to: self transforms, frames with two parents, frames no
    chain from `root` reaches, non-finite transforms."""
    problems = [f"self transform {e.child}" for e in edges if e.parent == e.child]
    parents: dict[str, str] = {}
    for edge in edges:
        if edge.child in parents and parents[edge.child] != edge.parent:
            problems.append(f"{edge.child} has two parents: {parents[edge.child]} and {edge.parent}")
        parents.setdefault(edge.child, edge.parent)
        if not np.isfinite(edge.T).all():
            problems.append(f"{edge.parent} -> {edge.child} is not finite")
    for child in parents:
        seen, frame = set(), child
        while frame in parents and frame not in seen:
            seen.add(frame)
            frame = parents[frame]
        if frame != root:
            problems.append(f"{child} is not reached from {root} (its chain ends at {frame})")
    return problems


def prefixed_urdf(text: str, prefix: str) -> str:
    """The URDF with every link name (and each joint's parent and child) prefixed, so that a
    robot model drawn from it finds the TF frames published with that prefix."""
    return renamed_urdf(text, lambda name: prefix + name) if prefix else text
