"""Another estimator's pose as the initial pose (estimator_node mode `external`).

Any estimator that publishes `geometry_msgs/PoseStamped`, `PoseWithCovarianceStamped` or, where
vision_msgs is importable, `vision_msgs/Detection3DArray` (Isaac ROS FoundationPose) can start
the refiner: the detection whose class id is the object's (the highest score among several) is
taken. The pose must be in the camera's optical frame (the refiner's frame).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

import numpy as np

from tactile_pose_refiner.core.geometry import pose_fields_to_matrix

EXTERNAL_TYPES = {
    "PoseStamped": "geometry_msgs.msg",
    "PoseWithCovarianceStamped": "geometry_msgs.msg",
    "Detection3DArray": "vision_msgs.msg",
}


@dataclass
class ExternalPose:
    header: object
    pose: object  # geometry_msgs/Pose
    covariance: np.ndarray | None  # (6, 6) in the ROS convention, None when the source gives none
    score: float | None = None


def external_message_class(type_name: str) -> type:
    """The message class of an external type; ValueError for an unknown type, ImportError (with
    what to install) where its package is not importable."""
    if type_name not in EXTERNAL_TYPES:
        raise ValueError(f"external_type must be one of {', '.join(EXTERNAL_TYPES)}, got {type_name!r}")
    try:
        return getattr(importlib.import_module(EXTERNAL_TYPES[type_name]), type_name)
    except ImportError as exc:
        package = EXTERNAL_TYPES[type_name].split(".")[0]
        raise ImportError(f"{type_name} needs the {package} package (e.g. ros-$ROS_DISTRO-vision-msgs)") from exc


def external_pose(msg, class_id: str | None) -> ExternalPose | str:
    """The initial pose in an external message, or why there is none (a one-line problem)."""
    if hasattr(msg, "detections"):
        return _detection(msg, class_id)
    if hasattr(msg.pose, "covariance"):
        found = ExternalPose(msg.header, msg.pose.pose, _covariance(msg.pose.covariance))
    else:
        found = ExternalPose(msg.header, msg.pose, None)
    return _checked(found)


def _detection(msg, class_id: str | None) -> ExternalPose | str:
    if not class_id:
        return "waiting for input: no object id yet (a detection is picked by its class id)"
    candidates = [
        (float(result.hypothesis.score), detection, result)
        for detection in msg.detections
        for result in detection.results
        if result.hypothesis.class_id == class_id
    ]
    if not candidates:
        classes = sorted({r.hypothesis.class_id for d in msg.detections for r in d.results})
        return f"no detection of {class_id!r} in the array (classes: {classes})"
    score, detection, result = max(candidates, key=lambda candidate: candidate[0])
    header = detection.header if detection.header.frame_id else msg.header
    return _checked(ExternalPose(header, result.pose.pose, _covariance(result.pose.covariance), score))


def _covariance(values) -> np.ndarray | None:
    """A usable 6 x 6 covariance, or None (all zeros means 'unknown' in many drivers)."""
    matrix = np.asarray(values, dtype=np.float64).reshape(6, 6)
    if not np.isfinite(matrix).all() or not np.any(matrix) or np.any(np.diag(matrix) < 0):
        return None
    return matrix


def _checked(found: ExternalPose) -> ExternalPose | str:
    if not found.header.frame_id:
        return "unusable external pose: no frame id (it must be the camera's optical frame)"
    if not np.isfinite(pose_fields_to_matrix(found.pose)).all():
        return "unusable external pose: not finite or a zero quaternion"
    return found
