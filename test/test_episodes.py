"""Generated episodes on real scans: consistent grasps, touch where fingers touch, depth on the
mesh, occlusion by the hand, and a byte-exact rosbag2 round trip."""

from __future__ import annotations

import numpy as np
import pytest
from manifold3d import Manifold, Mesh, OpType
from rosbags.rosbag2 import Reader

from tactile_pose_refiner.core.geometry import invert, transform_points
from tactile_pose_refiner.core.scene.distance import MeshDistance
from tactile_pose_refiner.io.episode_bag import EpisodeError, read_episode, write_episode
from tactile_pose_refiner.sim.episode import EpisodeGenerator

OBJECTS = ("008_pudding_box", "006_mustard_bottle")  # one watertight, one with holes
STEPS = 4


@pytest.fixture(scope="module")
def generator() -> EpisodeGenerator:
    return EpisodeGenerator()


@pytest.fixture(scope="module")
def episodes(generator, tmp_path_factory):
    result = {}
    for object_id in OBJECTS:
        info, frames = generator.episode(object_id, STEPS, seed=5)
        frames = list(frames)
        path = tmp_path_factory.mktemp("episodes") / object_id
        write_episode(path, frames)
        result[object_id] = (info, frames, path)
    return result


def manifold(mesh) -> Manifold:
    return Manifold(
        Mesh(vert_properties=np.asarray(mesh.vertices, np.float32), tri_verts=np.asarray(mesh.faces, np.uint32))
    )


def test_ground_truth_grasp_does_not_interpenetrate(generator, episodes):
    info, frames, _ = episodes["008_pudding_box"]
    assert info.grasp.max_penetration_m <= 0.0006  # closing stops at 0.5 mm
    model = generator.catalog.load("008_pudding_box")
    links = generator.hand.meshes(info.grasp.q, invert(info.grasp.T_base_obj))  # object frame
    hand = Manifold.batch_boolean([manifold(m) for m in links.values()], OpType.Add)
    volume_cm3 = (hand ^ manifold(model.geometry)).volume() * 1e6
    print(f"intersection volume at ground truth: {volume_cm3:.4f} cm^3")
    assert volume_cm3 < 0.05


@pytest.mark.parametrize("object_id", OBJECTS)
def test_tactile_contacts_are_where_the_fingers_touch(generator, episodes, object_id):
    info, frames, _ = episodes[object_id]
    finger_links = {name: set(f["links"]) for name, f in generator.config["fingers"].items()}
    touching_links = set().union(*(finger_links[n] for n in info.grasp.fingers_in_contact)) | {"palm_link"}
    threshold = generator.tactile.contact_threshold_units
    model = generator.catalog.load(object_id)
    distance = MeshDistance(model.geometry.vertices, model.geometry.faces)
    for frame in frames:
        in_contact = np.linalg.norm(frame.tactile.forces, axis=1) > threshold
        assert in_contact.sum() >= 2
        contact_links = {frame.tactile.link_names[i] for i in np.nonzero(in_contact)[0]}
        assert contact_links <= touching_links
        # the taxels in contact lie on the object's surface at the ground-truth pose
        poses = generator.hand.link_poses(generator.hand.joint_vector(frame.joint_names, frame.joint_positions))
        positions, _ = generator.skin.posed(poses, invert(frame.T_cam_obj) @ frame.T_cam_base)
        signed, _, _ = distance.query(positions[in_contact])
        assert np.abs(signed).max() < 0.002


@pytest.mark.parametrize("object_id", OBJECTS)
def test_depth_lands_on_the_mesh_at_the_ground_truth_pose(generator, episodes, object_id):
    _, frames, _ = episodes[object_id]
    model = generator.catalog.load(object_id)
    distance = MeshDistance(model.geometry.vertices, model.geometry.faces)
    for frame in frames:
        points = transform_points(invert(frame.T_cam_obj), frame.object_points())
        signed, _, _ = distance.query(points)
        assert len(points) > 500
        assert np.median(np.abs(signed)) < 0.002, np.median(np.abs(signed))


def test_the_hand_occludes_the_object_in_most_frames(episodes):
    occlusion = np.concatenate([info.occlusion for info, _, _ in episodes.values()])
    print(f"occlusion rate: {np.mean(occlusion > 0):.0%} of frames, mean {occlusion.mean():.1%}")
    assert np.mean(occlusion > 0) >= 0.5


def test_episode_round_trips_through_rosbag2_exactly(episodes, tmp_path):
    _, frames, path = episodes["006_mustard_bottle"]
    back = list(read_episode(path))
    assert len(back) == len(frames)
    for a, b in zip(frames, back):
        assert a.stamp_ns == b.stamp_ns and a.object_id == b.object_id and a.joint_names == b.joint_names
        for field in ("rgb", "depth_mm", "mask", "joint_positions"):
            assert np.array_equal(getattr(a, field), getattr(b, field)), field
        np.testing.assert_array_equal(a.tactile.forces, b.tactile.forces)
        np.testing.assert_allclose(a.T_cam_obj, b.T_cam_obj, atol=1e-15)
        np.testing.assert_allclose(a.T_cam_base, b.T_cam_base, atol=1e-15)
        np.testing.assert_allclose(a.camera.K, b.camera.K)
    # What was read writes the same bytes again; poses go through a rotation matrix and back,
    # which may change the last bit of a quaternion (checked to 1e-15 above instead).
    write_episode(tmp_path / "again", back)
    assert raw_messages(path) == raw_messages(tmp_path / "again")


def raw_messages(path) -> list[tuple[str, int, bytes]]:
    with Reader(path) as reader:
        return sorted(
            (c.topic, t, bytes(raw)) for c, t, raw in reader.messages() if c.msgtype != "geometry_msgs/msg/PoseStamped"
        )


def test_generation_is_deterministic_for_a_seed(generator):
    first = list(generator.episode("009_gelatin_box", 2, seed=11)[1])
    second = list(generator.episode("009_gelatin_box", 2, seed=11)[1])
    for a, b in zip(first, second):
        assert np.array_equal(a.rgb, b.rgb) and np.array_equal(a.depth_mm, b.depth_mm)
        assert np.array_equal(a.tactile.forces, b.tactile.forces)


def test_corrupt_or_missing_bags_get_errors_naming_the_file(episodes, tmp_path):
    with pytest.raises(EpisodeError, match="no metadata.yaml"):
        list(read_episode(tmp_path / "nothing_here"))
    _, _, path = episodes["008_pudding_box"]
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "metadata.yaml").write_text((path / "metadata.yaml").read_text())
    mcap = next(path.glob("*.mcap"))
    (corrupt / mcap.name).write_bytes(mcap.read_bytes()[: mcap.stat().st_size // 3])
    with pytest.raises(EpisodeError, match="corrupt"):
        list(read_episode(corrupt))
