"""The hand's TF tree as tf2 accepts it: one parent per frame, no self transforms, every link
reached from the camera frame; the robot model RViz draws names the same frames."""

from __future__ import annotations

import numpy as np
import pytest

from tactile_pose_refiner.core.geometry import invert
from tactile_pose_refiner.core.scene.kinematics import HandKinematics
from tactile_pose_refiner.core.scene.tf_tree import Edge, hand_edges, prefixed_urdf, tree_problems

CAMERA = "camera_color_optical_frame"


@pytest.fixture(scope="module")
def hand():
    return HandKinematics.from_config()


def _q(hand) -> np.ndarray:
    return 0.5 * (hand.lower + hand.upper)


def test_the_hand_chain_and_the_camera_edge_make_one_tree_from_the_camera(hand):
    T_cam_base = np.eye(4)
    T_cam_base[:3, 3] = [0.05, -0.02, 0.45]
    edges = [Edge(CAMERA, "ah_" + hand.root, T_cam_base)] + hand_edges(hand, _q(hand), "ah_")
    assert tree_problems(edges, CAMERA) == []
    poses = hand.link_poses(_q(hand))
    assert {e.child for e in edges} == {"ah_" + link for link in poses}
    parent_of = {e.child: e for e in edges}
    for link, T_base_link in poses.items():  # chaining the edges gives the kinematics' link poses
        T, frame = np.eye(4), "ah_" + link
        while frame != CAMERA:
            T, frame = parent_of[frame].T @ T, parent_of[frame].parent
        np.testing.assert_allclose(invert(T_cam_base) @ T, T_base_link, atol=1e-12)


def test_what_the_node_broadcast_before_is_rejected(hand):
    """Every link flat under the base, the base included (base_link -> base_link), beside a
    robot_state_publisher's chain: a self transform and links with two parents."""
    poses = hand.link_poses(_q(hand))
    flat = [Edge(hand.root, link, T) for link, T in poses.items()]
    problems = tree_problems(flat + hand_edges(hand, _q(hand)), hand.root)
    assert f"self transform {hand.root}" in problems
    assert any("has two parents" in p for p in problems)


def test_the_robot_description_names_the_prefixed_frames(hand, tmp_path):
    urdf = tmp_path / "hand.urdf"
    urdf.write_text(prefixed_urdf(hand.urdf_path.read_text(), "ah_"))
    prefixed = HandKinematics(urdf)
    assert prefixed.root == "ah_" + hand.root
    q = _q(hand)
    plain, renamed = hand.link_poses(q), prefixed.link_poses(q)
    assert set(renamed) == {"ah_" + link for link in plain}
    for link, T in plain.items():
        np.testing.assert_allclose(renamed["ah_" + link], T)
    assert prefixed_urdf(hand.urdf_path.read_text(), "") == hand.urdf_path.read_text()


def test_joint_state_node_sends_the_chain_with_its_prefix(hand):
    """The node's transforms for a joint state, as tf2 would receive them."""
    import rclpy

    from tactile_pose_refiner.nodes.joint_state_node import JointStateNode

    rclpy.init()
    try:
        node = JointStateNode()
        sent = node.hand_transforms(node.get_clock().now().to_msg(), _q(hand))
        node.destroy_node()
    finally:
        rclpy.shutdown()
    edges = [Edge(t.header.frame_id, t.child_frame_id, np.eye(4)) for t in sent] + [
        Edge(CAMERA, node.base_frame, np.eye(4))
    ]
    assert node.base_frame == "ah_base_link" and tree_problems(edges, CAMERA) == []
    assert len(sent) == len(hand.joints)


def test_a_urdf_with_the_vendors_prefix_loads_as_the_hand_it_describes(hand, tmp_path):
    """The vendor's description names every link and joint with its prefix (ah_palm_link,
    ah_joint00): it loads unchanged, the configs' unprefixed names find its links and joints, the
    driver's ah_joint names map, and the skin sits where it sits on the project's URDF."""
    import dataclasses
    from xml.etree import ElementTree

    from tactile_pose_refiner.core.resources import load_config
    from tactile_pose_refiner.core.scene.assets import HandAssets
    from tactile_pose_refiner.core.scene.hand import HandModel
    from tactile_pose_refiner.core.scene.skin import contact_positions
    from tactile_pose_refiner.sim.episode import EpisodeGenerator

    root = ElementTree.fromstring(prefixed_urdf(hand.urdf_path.read_text(), "ah_"))
    for joint in root.iter("joint"):
        joint.set("name", "ah_" + joint.get("name"))
    vendor_path = tmp_path / "allegro_hand_right.urdf"
    vendor_path.write_text(ElementTree.tostring(root, encoding="unicode"))
    maps = load_config("hand")["joint_name_maps"]
    vendor = HandModel(vendor_path, maps)
    assert vendor.kinematics.urdf_prefix == "ah_" and vendor.joint_names == hand.joint_names
    q = _q(hand)
    ours, theirs = hand.link_poses(q), vendor.kinematics.link_poses(q)
    assert ours.keys() == theirs.keys() and all(np.allclose(ours[k], theirs[k]) for k in ours)
    driver_names = ["ah_" + name for name in hand.joint_names]  # what the vendor's ros2_control publishes
    assert np.allclose(vendor.joint_vector(driver_names, q), q)

    _, frames = EpisodeGenerator().episode("010_potted_meat_can", 1, seed=2)
    frame = next(iter(frames))
    assets = HandAssets.from_config()
    points = []
    for model in (assets.model, vendor):  # encoder positions as they are (no correction from depth)
        posed = dataclasses.replace(assets, model=model, fitter=None).posed(frame)
        points.append(contact_positions(frame.tactile, assets.layout, posed.link_poses, posed.T_frame_base, 0.0))
    assert len(points[0]) > 0 and np.allclose(points[0], points[1])
