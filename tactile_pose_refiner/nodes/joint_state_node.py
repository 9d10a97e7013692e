"""joint_state_node: Allegro JointState (either driver naming) -> the hand's state for the
other nodes, and the hand's TF tree.

Subscribes `/joint_states` (sensor_msgs/JointState, SensorDataQoS) and the hand base pose in the
camera frame (`/hand/base_pose`). Publishes `hand/joint_states` (the 16 URDF joints, same stamp;
what tactile_node and refiner_node use), `hand/link_poses` (geometry_msgs/PoseArray of the links
sorted by name, as logged at start, in the hand base frame) and `robot_description` (the URDF,
its links named as in TF). It owns the hand's TF tree: one transform per URDF joint (parent
link -> child link) and camera -> hand base from the base pose, frame names prefixed with
`frame_prefix` (the vendor driver's `ah_`), sent through tf2_ros where it is importable (else
through tf2_msgs on /tf where that is; else none, logged). A state that lacks hand joints or
holds NaN is reported on /diagnostics and not forwarded.
"""

from __future__ import annotations

import numpy as np
from geometry_msgs.msg import PoseArray, PoseStamped, Quaternion, TransformStamped, Vector3
from sensor_msgs.msg import JointState
from std_msgs.msg import String

from tactile_pose_refiner.core.geometry import matrices_to_poses, pose_fields_to_matrix
from tactile_pose_refiner.core.scene.kinematics import HandInputError, HandKinematics
from tactile_pose_refiner.core.scene.tf_tree import Edge, hand_edges, prefixed_urdf
from tactile_pose_refiner.nodes.common import (
    LATCHED,
    OUTPUT_QOS,
    RELIABLE_INPUTS,
    SILENCE_WATCHDOG,
    GraphNode,
    default_topic,
    run_node,
    stale_by,
)
from tactile_pose_refiner.nodes.conversions import matrices_to_pose_msgs

PARAMETERS = {
    **RELIABLE_INPUTS,
    **SILENCE_WATCHDOG,
    "frame_prefix": ("ah_", "prefix of the hand's TF frame names (the vendor driver's ah_; empty: the URDF's own)"),
    "max_age_s": (0.0, "drop joint states older than this against the node clock [s]; 0: off"),
    "publish_tf": (True, "broadcast the hand's TF tree (URDF joints, camera -> base) where tf2 is importable"),
}


class JointStateNode(GraphNode):
    def __init__(self) -> None:
        super().__init__("joint_state_node", PARAMETERS)
        self.hand = HandKinematics.from_config()  # numpy FK: this node never needs torch
        self.prefix = str(self.params["frame_prefix"])
        self.base_frame = self.prefix + self.hand.root
        self.joints_pub = self.create_publisher(JointState, "hand/joint_states", OUTPUT_QOS)
        self.poses_pub = self.create_publisher(PoseArray, "hand/link_poses", OUTPUT_QOS)
        description = self.create_publisher(String, "robot_description", LATCHED)
        description.publish(String(data=prefixed_urdf(self.hand.urdf_text, self.prefix)))
        self.send_transforms, tf_note = self._tf_sender() if self.params["publish_tf"] else (None, "off")
        self.create_subscription(JointState, default_topic("joint_states"), self.on_joint_state, self.inputs)
        self.create_subscription(PoseStamped, default_topic("hand_pose"), self.on_hand_pose, self.inputs)
        self.get_logger().info(
            f"link pose order: {sorted(self.hand.link_poses(np.zeros(len(self.hand.joint_names))))}; "
            f"hand base frame {self.base_frame}; TF {tf_note}"
        )

    def _tf_sender(self):
        """(send(list of TransformStamped), how): tf2_ros's broadcaster, else TFMessage on /tf."""
        try:
            from tf2_ros import TransformBroadcaster

            return TransformBroadcaster(self).sendTransform, "on (tf2_ros)"
        except ImportError:
            pass
        try:
            from tf2_msgs.msg import TFMessage
        except ImportError:
            return None, "off (neither tf2_ros nor tf2_msgs importable)"
        publisher = self.create_publisher(TFMessage, "/tf", 100)
        return (lambda transforms: publisher.publish(TFMessage(transforms=transforms))), "on (tf2_msgs on /tf)"

    def on_joint_state(self, msg: JointState) -> None:
        stale = stale_by(self, msg.header.stamp, self.params["max_age_s"])
        if stale is not None:
            self.diagnostics.report("warn", f"stale input: joint state is {stale:.2f} s off the clock")
            return
        try:
            q = self.hand.joint_vector(list(msg.name), list(msg.position))
        except HandInputError as exc:
            self.diagnostics.report("error", f"unusable joint state: {exc}")
            return
        self.joints_pub.publish(JointState(header=msg.header, name=list(self.hand.joint_names), position=q.tolist()))
        poses = self.hand.link_poses(q)
        names = sorted(poses)
        header = msg.header.__class__(stamp=msg.header.stamp, frame_id=self.base_frame)
        self.poses_pub.publish(
            PoseArray(header=header, poses=matrices_to_pose_msgs(np.stack([poses[n] for n in names])))
        )
        if self.send_transforms is not None:
            self.send_transforms(self.hand_transforms(msg.header.stamp, q))
        self.diagnostics.report("ok", "publishing hand state")

    def hand_transforms(self, stamp, q: np.ndarray) -> list[TransformStamped]:
        """The hand's chain at q: one transform per URDF joint."""
        return transforms(stamp, hand_edges(self.hand, q, self.prefix))

    def on_hand_pose(self, msg: PoseStamped) -> None:
        """Camera -> hand base: where RViz and tf2 users find the hand in the camera's frame."""
        T = pose_fields_to_matrix(msg.pose)
        if not msg.header.frame_id or not np.isfinite(T).all():
            self.diagnostics.report("warn", "unusable hand base pose: no frame id or not finite")
            return
        if self.send_transforms is not None:
            self.send_transforms(transforms(msg.header.stamp, [Edge(msg.header.frame_id, self.base_frame, T)]))


def transforms(stamp, edges: list[Edge]) -> list[TransformStamped]:
    """One TransformStamped per edge (parent -> child), converted together."""
    translations, quaternions = matrices_to_poses(np.stack([edge.T for edge in edges]))
    messages = []
    for edge, (x, y, z), (qx, qy, qz, qw) in zip(edges, translations.tolist(), quaternions.tolist()):
        message = TransformStamped(child_frame_id=edge.child)
        message.header.stamp, message.header.frame_id = stamp, edge.parent
        message.transform.translation = Vector3(x=x, y=y, z=z)
        message.transform.rotation = Quaternion(x=qx, y=qy, z=qz, w=qw)
        messages.append(message)
    return messages


def main(args: list[str] | None = None) -> int:
    return run_node(JointStateNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
