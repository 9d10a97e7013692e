"""The hand's forward kinematics in numpy, for the nodes that only place links and taxels
(joint_state_node, tactile_node): the differentiable chain (pytorch-kinematics) brings torch,
~420 MB per process, for what 16 matrix products do. Joint states are validated here."""

from __future__ import annotations

import io
import os
from collections.abc import Mapping, Sequence
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple
from xml.etree import ElementTree

import numpy as np
import yourdfpy
from scipy.spatial.transform import Rotation

from tactile_pose_refiner.core.resources import ResourceError, load_config, share_dir

if TYPE_CHECKING:
    import torch

# Encoder offsets and a hand pressed against an object leave positions a little outside the
# URDF's limits; 20 degrees beyond them is a broken reading.
LIMIT_SLACK_RAD = 0.35


def load_urdf(text: str) -> yourdfpy.URDF:
    """The URDF's links and joints (no meshes loaded: paths are resolved by the caller)."""
    return yourdfpy.URDF.load(
        io.StringIO(text), build_scene_graph=False, load_meshes=False, load_collision_meshes=False
    )


def unprefixed_urdf(text: str) -> tuple[str, str]:
    """(the URDF with the frame prefix that every link and every moving joint share removed, that
    prefix): the vendor's ah_palm_link / ah_joint00 become palm_link / joint00, as config names
    them; ("" and the text unchanged) where there is none. joint_state_node adds its
    frame_prefix back for TF."""
    root = ElementTree.fromstring(text)
    links = [link.get("name", "") for link in root.iter("link")]
    moving = [joint.get("name", "") for joint in root.iter("joint") if joint.get("type") != "fixed"]
    common = os.path.commonprefix(links + moving)
    prefix = common[: common.rfind("_") + 1]
    if not prefix:
        return text, ""
    strip = lambda name: name[len(prefix) :] if name.startswith(prefix) else name  # noqa: E731
    return renamed_urdf(text, strip, rename_joints=True), prefix


def renamed_urdf(text: str, rename, rename_joints: bool = False) -> str:
    """The URDF with rename(name) for every link name and each joint's parent and child (and, with
    rename_joints, each joint's own name)."""
    root = ElementTree.fromstring(text)
    for link in root.iter("link"):
        link.set("name", rename(link.get("name", "")))
    for joint in root.iter("joint"):
        if rename_joints:
            joint.set("name", rename(joint.get("name", "")))
        for end in ("parent", "child"):
            element = joint.find(end)
            if element is not None:
                element.set("link", rename(element.get("link", "")))
    return ElementTree.tostring(root, encoding="unicode")


class HandInputError(ValueError):
    """Joint states cannot be turned into a hand configuration (named in the message)."""


class HandKinematics:
    """Joint names, limits and link poses of a URDF; joint_names: the order of every q."""

    def __init__(self, urdf_path: str | Path, joint_name_maps: Mapping[str, Mapping[str, str]] | None = None) -> None:
        """urdf_path: the hand's URDF as written, the vendor's frame prefix included (`urdf_text`
        holds it without: the configs name links and joints unprefixed)."""
        self.urdf_path = Path(urdf_path)
        try:
            self.urdf_text, self.urdf_prefix = unprefixed_urdf(self.urdf_path.read_text())
            robot = load_urdf(self.urdf_text)
        except Exception as exc:
            raise ResourceError(f"cannot read hand URDF {self.urdf_path}: {exc}") from exc
        self.joints = list(robot.robot.joints)
        self.joint_names: list[str] = list(robot.actuated_joint_names)
        by_name = {joint.name: joint for joint in self.joints}
        self.lower = np.array([by_name[n].limit.lower for n in self.joint_names], dtype=np.float64)
        self.upper = np.array([by_name[n].limit.upper for n in self.joint_names], dtype=np.float64)
        self.root = next(iter({j.parent for j in self.joints} - {j.child for j in self.joints}))
        self.name_map = {name: name for name in self.joint_names}
        self.name_map.update({self.urdf_prefix + name: name for name in self.joint_names})  # the URDF's own names
        for mapping in (joint_name_maps or {}).values():
            self.name_map.update(mapping)

    @classmethod
    def from_config(cls, name: str = "hand") -> HandKinematics:
        config = load_config(name)
        urdf = Path(config["urdf"])
        return cls(urdf if urdf.is_absolute() else share_dir() / urdf, config.get("joint_name_maps"))

    def joint_vector(self, names: Sequence[str], positions: Sequence[float]) -> np.ndarray:
        """A JointState's (names, positions) in any configured naming -> q in URDF order.

        Raises HandInputError on missing or repeated joints, length mismatch, non-finite values or
        positions far outside the joint limits. Names that are no hand joint (an arm's) are ignored.
        """
        if len(names) != len(positions):
            raise HandInputError(f"joint state has {len(names)} names but {len(positions)} positions")
        by_urdf = {}
        for name, value in zip(names, positions):
            if name in self.name_map:
                if self.name_map[name] in by_urdf:
                    raise HandInputError(f"joint state names hand joint {self.name_map[name]} twice (as {name!r})")
                by_urdf[self.name_map[name]] = float(value)
        missing = [n for n in self.joint_names if n not in by_urdf]
        if missing:
            raise HandInputError(f"joint state lacks hand joints {missing} (got {list(names)})")
        q = np.array([by_urdf[n] for n in self.joint_names])
        if not np.isfinite(q).all():
            bad = [n for n, v in zip(self.joint_names, q) if not np.isfinite(v)]
            raise HandInputError(f"joint state has non-finite positions for {bad}")
        outside = (q < self.lower - LIMIT_SLACK_RAD) | (q > self.upper + LIMIT_SLACK_RAD)
        if outside.any():
            bad = {n: round(float(v), 3) for n, v, o in zip(self.joint_names, q, outside) if o}
            raise HandInputError(f"joint positions far outside the joint limits [rad]: {bad}")
        return q

    @cached_property
    def joint_order(self) -> list:
        """The URDF's joints, each after its parent's (URDF lists them in any order)."""
        placed, ordered, pending = {self.root}, [], list(self.joints)
        while pending:
            ready = [joint for joint in pending if joint.parent in placed]
            if not ready:
                raise ResourceError(f"hand URDF {self.urdf_path} is not a tree rooted at {self.root}")
            ordered += ready
            placed |= {joint.child for joint in ready}
            pending = [joint for joint in pending if joint not in ready]
        return ordered

    def link_poses(self, q: np.ndarray) -> dict[str, np.ndarray]:
        """q -> link name -> (4, 4) T_root_link, every link of the tree."""
        angle = dict(zip(self.joint_names, np.asarray(q, dtype=np.float64)))
        poses = {self.root: np.eye(4)}
        for joint in self.joint_order:
            motion = np.eye(4)
            if joint.name in angle and joint.type == "prismatic":
                motion[:3, 3] = np.asarray(joint.axis) * angle[joint.name]
            elif joint.name in angle:
                motion[:3, :3] = Rotation.from_rotvec(np.asarray(joint.axis) * angle[joint.name]).as_matrix()
            poses[joint.child] = poses[joint.parent] @ np.asarray(joint.origin) @ motion
        return poses

    def link_poses_torch(self, q: torch.Tensor) -> dict[str, torch.Tensor]:
        """q (J,) tensor -> link name -> (4, 4) T_root_link, differentiable in q (the hand fit).
        Written here, not taken from pytorch-kinematics: that library imports matplotlib (0.5 s and
        50 MB of a node's start) for these 16 products; the tests check the two agree."""
        import torch

        chain = self._chain
        origins, skews, slides = (torch.as_tensor(a, dtype=q.dtype) for a in (chain.origins, chain.skews, chain.slides))
        angles = q[..., None, None]  # every actuated joint's motion at once (Rodrigues / slide)
        skew_turn = torch.sin(angles) * skews + (1 - torch.cos(angles)) * (skews @ skews)
        motion = torch.eye(4, dtype=q.dtype) + torch.nn.functional.pad(skew_turn, (0, 1, 0, 1))
        motion = motion + torch.nn.functional.pad(slides * angles, (3, 0, 0, 1))
        moved = origins[torch.as_tensor(chain.actuated_rows)] @ motion
        poses = {self.root: torch.eye(4, dtype=q.dtype)}
        for row, joint in enumerate(self.joint_order):
            k = chain.q_index[row]
            poses[joint.child] = poses[joint.parent] @ (moved[k] if k >= 0 else origins[row])
        return poses

    @cached_property
    def _chain(self) -> _ChainArrays:
        by_name = {joint.name: joint for joint in self.joint_order}
        axes = np.array([np.asarray(by_name[name].axis, dtype=np.float64) for name in self.joint_names])
        prismatic = np.array([by_name[name].type == "prismatic" for name in self.joint_names])
        order = [joint.name for joint in self.joint_order]
        return _ChainArrays(
            origins=np.array([np.asarray(joint.origin, dtype=np.float64) for joint in self.joint_order]),
            skews=np.cross(np.eye(3)[None], axes[:, None, :]) * ~prismatic[:, None, None],
            slides=(axes * prismatic[:, None])[:, :, None],
            actuated_rows=np.array([order.index(name) for name in self.joint_names]),
            q_index=np.array([self.joint_names.index(n) if n in self.joint_names else -1 for n in order]),
        )


class _ChainArrays(NamedTuple):
    """The URDF's constants for the batched FK: per joint of joint_order its origin (4, 4) and its
    index in q (-1: fixed); per actuated joint (q's order) its axis' cross-product matrix (zero when
    prismatic), its slide direction (zero when revolute) and its row in joint_order."""

    origins: np.ndarray
    skews: np.ndarray
    slides: np.ndarray
    actuated_rows: np.ndarray
    q_index: np.ndarray
