"""The hand base pose in the camera frame, looked up in tf2 where tf2_ros is importable.

On a robot the hand hangs in TF (the arm's kinematics and the hand-eye calibration), so the
refiner takes its base pose at each image's stamp from there; the hand pose topic
(config/topics.yaml `hand_pose`) stays the fallback, and the only source where tf2_ros is not
importable (these PyPI wheels).
"""

from __future__ import annotations

import numpy as np

from tactile_pose_refiner.core.geometry import pose_matrix

PARAMETERS = {
    "hand_pose_source": (
        "auto",
        "hand base pose: auto (tf2 where importable and it holds the transform, else the topic) or topic",
    ),
    "base_frame": ("ah_base_link", "the hand base's TF frame (joint_state_node's frame_prefix + the URDF root)"),
}


class TfHandPose:
    def __init__(self, buffer, base_frame: str, lookup_errors: tuple[type[Exception], ...]) -> None:
        """buffer: a tf2_ros.Buffer filled by a TransformListener; lookup_errors: what its
        lookup raises for a transform it does not hold (yet)."""
        self.buffer, self.base_frame, self.lookup_errors = buffer, base_frame, lookup_errors

    @classmethod
    def for_node(cls, node) -> TfHandPose | None:
        """None where the node takes the topic only (parameter, or tf2_ros not importable)."""
        source = node.params["hand_pose_source"]
        if source not in ("auto", "topic"):
            raise ValueError(f"hand_pose_source must be auto or topic, not {source!r}")
        if source == "topic":
            return None
        try:
            from tf2_ros import Buffer, TransformException, TransformListener
        except ImportError:
            return None
        buffer = Buffer()
        node.tf_listener = TransformListener(buffer, node)  # kept: it fills the buffer while it lives
        return cls(buffer, node.params["base_frame"], (TransformException,))

    def lookup(self, camera_frame: str, stamp_ns: int) -> np.ndarray | None:
        """T_camera_base at stamp_ns, or None where TF does not hold it."""
        from rclpy.time import Time

        try:
            transform = self.buffer.lookup_transform(camera_frame, self.base_frame, Time(nanoseconds=stamp_ns))
        except self.lookup_errors:
            return None
        t, q = transform.transform.translation, transform.transform.rotation
        try:
            T = pose_matrix((t.x, t.y, t.z), (q.x, q.y, q.z, q.w))
        except ValueError:  # a zero quaternion
            return None
        return T if np.isfinite(T).all() else None
