"""Scene model on the real hand description and the real YCB scans."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch
import trimesh

from tactile_pose_refiner.core.resources import ResourceError, load_config
from tactile_pose_refiner.core.scene.hand import HandModel
from tactile_pose_refiner.core.scene.kinematics import HandInputError
from tactile_pose_refiner.core.scene.objects import ObjectCatalog, ObjectModelError
from tactile_pose_refiner.core.scene.skin import SkinLayout

NOT_WATERTIGHT = {
    "005_tomato_soup_can",
    "006_mustard_bottle",
    "007_tuna_fish_can",
    "009_gelatin_box",
    "035_power_drill",
}


@pytest.fixture(scope="module")
def hand() -> HandModel:
    return HandModel.from_config()


def test_both_driver_namings_give_the_same_configuration(hand):
    values = np.linspace(0.1, 0.4, 16)
    ah = [f"ah_joint{f}{j}" for f in range(4) for j in range(4)]
    legacy_of = {
        **{f"ah_joint{f}{j}": f"joint_{(f - 1) * 4 + j}.0" for f in (1, 2, 3) for j in range(4)},
        **{f"ah_joint0{j}": f"joint_{12 + j}.0" for j in range(4)},
    }
    q_ah = hand.joint_vector(ah, values)
    q_legacy = hand.joint_vector([legacy_of[n] for n in ah], values)
    np.testing.assert_array_equal(q_ah, q_legacy)
    assert q_ah[hand.joint_names.index("joint13")] == values[ah.index("ah_joint13")]


def test_kinematics_match_the_published_chain(hand):
    poses = hand.link_poses(np.zeros(16))
    np.testing.assert_allclose(poses["palm_link"][:3, 3], [0, 0, 0.095])
    # index tip at rest: palm + 0.0164 + 0.054 + 0.0384 + 0.0267 along the tilted finger axis
    length = 0.0164 + 0.054 + 0.0384 + 0.0267
    np.testing.assert_allclose(np.linalg.norm(poses["link_14"][:3, 3] - [0, 0.0435, 0.095]), length, atol=1e-9)
    assert hand.upper[hand.joint_names.index("joint00")] == pytest.approx(1.396)


def test_forward_kinematics_match_pytorch_kinematics(hand):
    """The package's FK (numpy for the nodes, torch for the hand fit) against the library's."""
    import pytorch_kinematics as pk

    chain = pk.build_chain_from_urdf(hand.kinematics.urdf_text.encode()).to(dtype=torch.float64)
    assert list(chain.get_joint_parameter_names()) == hand.joint_names
    for q in np.random.default_rng(3).uniform(hand.lower, hand.upper, (4, 16)):
        library = chain.forward_kinematics(torch.as_tensor(q))
        expected = {name: transform.get_matrix()[0].numpy() for name, transform in library.items()}
        with torch.no_grad():
            in_torch = {name: pose.numpy() for name, pose in hand.link_poses_torch(torch.as_tensor(q)).items()}
        for poses in (hand.link_poses(q), in_torch):
            assert sorted(poses) == sorted(expected)
            for name, pose in poses.items():
                np.testing.assert_allclose(pose, expected[name], atol=1e-6)  # the library rounds origins to float32


def test_forward_kinematics_gradient_matches_finite_differences(hand):
    q = torch.full((16,), 0.3, dtype=torch.float64, requires_grad=True)
    tip = hand.link_poses_torch(q)["link_14"][:3, 3]
    tip.sum().backward()
    step = 1e-6
    numeric = []
    for i in range(16):
        plus, minus = q.detach().clone(), q.detach().clone()
        plus[i] += step
        minus[i] -= step
        numeric.append(
            (hand.link_poses_torch(plus)["link_14"][:3, 3].sum() - hand.link_poses_torch(minus)["link_14"][:3, 3].sum())
            / (2 * step)
        )
    np.testing.assert_allclose(q.grad.numpy(), torch.stack(numeric).numpy(), atol=1e-8)


@pytest.mark.parametrize(
    "names, positions, complaint",
    [
        (["ah_joint00"], [0.1], "lacks hand joints"),
        ([f"ah_joint{f}{j}" for f in range(4) for j in range(4)], [0.1] * 15 + [float("nan")], "non-finite"),
        (["ah_joint00", "ah_joint01"], [0.1], "2 names but 1 positions"),
        ([f"ah_joint{f}{j}" for f in range(4) for j in range(4)] + ["joint00"], [0.1] * 17, "joint00 twice"),
        ([f"ah_joint{f}{j}" for f in range(4) for j in range(4)], [0.1] * 15 + [7.0], "outside the joint limits"),
    ],
)
def test_bad_joint_states_are_rejected_with_the_reason(hand, names, positions, complaint):
    with pytest.raises(HandInputError, match=complaint):
        hand.joint_vector(names, positions)


def test_a_vendor_style_urdf_with_stl_meshes_loads(tmp_path):
    package = tmp_path / "allegro_description"
    (package / "meshes").mkdir(parents=True)
    (package / "urdf").mkdir()
    trimesh.creation.box(extents=(0.02, 0.02, 0.05)).export(package / "meshes" / "link.stl")
    (package / "urdf" / "hand.urdf").write_text("""<robot name="h">
      <link name="base_link"><collision><geometry>
        <mesh filename="package://allegro_description/meshes/link.stl" scale="1 1 1"/>
      </geometry></collision></link>
      <joint name="j" type="revolute"><parent link="base_link"/><child link="tip"/>
        <origin xyz="0 0 0.05"/><axis xyz="0 1 0"/><limit lower="-1" upper="1" effort="1" velocity="1"/></joint>
      <link name="tip"><collision><geometry><sphere radius="0.01"/></geometry></collision></link>
    </robot>""")
    hand = HandModel(package / "urdf" / "hand.urdf")
    assert set(hand.links) == {"base_link", "tip"}
    assert hand.links["base_link"].mesh.volume == pytest.approx(0.02 * 0.02 * 0.05, rel=1e-6)
    (package / "meshes" / "link.stl").write_bytes(b"not an stl")
    with pytest.raises(ResourceError, match="link.stl"):
        HandModel(package / "urdf" / "hand.urdf")


def test_skin_has_368_taxels_on_the_link_surfaces(hand):
    skin = SkinLayout.from_config()
    assert len(skin) == 368 and sorted(skin.ids) == list(range(368))
    per_link = Counter(skin.links)
    assert per_link["palm_link"] == 72
    for finger in "123":
        assert per_link[f"link_{finger}1"] + per_link[f"link_{finger}2"] + per_link[f"link_{finger}4"] == 78
    assert per_link["link_02"] + per_link["link_03"] + per_link["link_04"] == 62
    for link in per_link:
        rows = np.array([name == link for name in skin.links])
        _, distance, _ = trimesh.proximity.closest_point(hand.links[link].mesh, skin.positions[rows])
        assert distance.max() < 3e-4, link  # on the collision surface (sphere is faceted)
    np.testing.assert_allclose(np.linalg.norm(skin.normals, axis=1), 1.0, atol=1e-5)


def _vendor_style_hand(tmp_path, grow_m: float) -> HandModel:
    """The bundled hand as a vendor ships one: every link's collision geometry an STL mesh (the
    bundled shapes grown by grow_m, as the vendor's rounded meshes are larger than its boxes)
    behind package:// paths, and every link and joint with the `ah_` prefix."""
    from xml.etree import ElementTree

    from tactile_pose_refiner.core.scene.kinematics import renamed_urdf

    bundled = HandModel.from_config()
    meshes = tmp_path / "allegro_description" / "meshes"
    meshes.mkdir(parents=True)
    root = ElementTree.fromstring(bundled.kinematics.urdf_text)
    for link in root.iter("link"):
        name = link.get("name")
        for collision in list(link.iter("collision")):
            link.remove(collision)
        if name not in bundled.links:
            continue
        mesh = bundled.links[name].mesh.copy()  # link frame, collision origins applied
        mesh.vertices += grow_m * mesh.vertex_normals
        mesh.export(meshes / f"{name}.stl")
        collision = ElementTree.SubElement(link, "collision")
        geometry = ElementTree.SubElement(collision, "geometry")
        ElementTree.SubElement(geometry, "mesh", filename=f"package://allegro_description/meshes/{name}.stl")
    text = renamed_urdf(ElementTree.tostring(root, encoding="unicode"), lambda n: "ah_" + n, rename_joints=True)
    urdf = tmp_path / "allegro_description" / "allegro_hand_right.urdf"
    urdf.write_text(text)
    return HandModel(urdf, package_dirs={"allegro_description": str(tmp_path / "allegro_description")})


def test_the_skin_is_placed_on_a_vendor_hands_own_collision_meshes(tmp_path):
    """Drawn for the bundled boxes, a layout sits inside a vendor's larger STL links (there 1.5 mm):
    nothing could touch those taxels. Placed on the hand's own geometry, every taxel is on its
    link's surface; the bundled hand's layout stays as drawn."""
    from tactile_pose_refiner.core.scene.assets import skin_layout

    bundled, vendor = HandModel.from_config(), _vendor_style_hand(tmp_path, 0.0015)
    q = np.zeros(len(bundled.joint_names))
    for a, b in zip(bundled.link_poses(q).values(), vendor.link_poses(q).values()):
        np.testing.assert_allclose(a, b, atol=1e-9)  # the prefix changes names, not kinematics
    drawn = SkinLayout.from_config()
    np.testing.assert_array_equal(skin_layout(bundled).positions, drawn.positions)

    def depth_inside(layout):
        depth = np.empty(len(layout))
        for link in set(layout.links):
            rows = np.array([name == link for name in layout.links])
            depth[rows] = trimesh.proximity.signed_distance(vendor.links[link].mesh, layout.positions[rows])
        return depth  # > 0 inside the link

    assert (depth_inside(drawn) > 1e-3).mean() > 0.3
    placed = skin_layout(vendor)
    assert np.abs(depth_inside(placed)).max() < 5e-5
    np.testing.assert_allclose(np.linalg.norm(placed.normals, axis=1), 1.0, atol=1e-6)
    assert (np.einsum("nc,nc->n", placed.normals, drawn.normals) > 0.5).all()  # still facing out


@pytest.mark.slow
def test_a_vendor_style_hand_feels_a_generated_grasp_and_touch_refines_with_it(tmp_path):
    """The vendor-style hand (STL links 1.5 mm larger, joints published with the URDF's own `ah_`
    names) in the generator and the refiner: its placed skin feels a grasp as the bundled hand's
    does and lies on the object where the object is, and touch refines with it; the layout as drawn
    sits inside the links: it feels nothing, and read from it the contacts lie 1 mm+ off the object."""
    import dataclasses

    from tactile_pose_refiner.core.geometry import translation
    from tactile_pose_refiner.core.pipeline import FrameRefiner
    from tactile_pose_refiner.core.scene.assets import HandAssets
    from tactile_pose_refiner.core.tracking.tracker import Tracker
    from tactile_pose_refiner.sim.episode import EpisodeGenerator

    def first_frame(generator, grasp=None):
        info, frames = generator.episode(box, 1, 0) if grasp is None else generator.replay(box, grasp, 1, 0)
        return info, next(frames)

    box, vendor = "004_sugar_box", _vendor_style_hand(tmp_path, 0.0015)
    generator = EpisodeGenerator(hand=vendor)
    placed, frame = first_frame(generator)
    bundled, _ = first_frame(EpisodeGenerator())
    generator.skin = SkinLayout.from_config()
    drawn, _ = first_frame(generator, placed.grasp)
    assert set(placed.grasp.fingers_in_contact) == {"thumb", "index", "middle", "ring"}
    assert placed.taxels_in_contact[0] >= max(5, bundled.taxels_in_contact[0] - 2)
    assert drawn.taxels_in_contact[0] == 0

    assets = HandAssets.from_config(vendor)
    drawn_assets = dataclasses.replace(assets, layout=SkinLayout.from_config())
    model = generator.catalog.load(box)

    refiner = FrameRefiner(model, assets)

    def touch_rms_mm(hand_assets, tracker):  # the skin's contacts at their gaps, the object where it is
        solve = tracker.touch_solve(frame, frame.T_cam_obj, hand_assets.posed(frame), 4.0, 4.4, 0)
        return solve.block_stats["touch"]["rms_mm"]

    drawn_tracker = Tracker(refiner.object, drawn_assets)  # the same object's assets, the drawn skin
    assert touch_rms_mm(assets, refiner.tracker) < 0.1 and touch_rms_mm(drawn_assets, drawn_tracker) > 1.0
    T_initial = frame.T_cam_obj @ translation(np.array([0.004, -0.003, 0.002]))
    refinement = refiner.refine(frame, T_initial, "touch_only")
    assert refinement.diagnostics.status == "ok"
    error, start = (np.linalg.norm(T[:3, 3] - frame.T_cam_obj[:3, 3]) for T in (refinement.T, T_initial))
    assert error < 0.5 * start


def test_the_bundled_catalog_loads_every_scan_with_its_texture():
    catalog = ObjectCatalog.from_config(catalogs=[])  # the package's own, whatever TPR_CATALOG says
    assert catalog.ids == list(load_config("objects")["objects"])
    for object_id in catalog.ids:
        model = catalog.load(object_id)
        assert model.texture is not None and model.uv is not None and not model.notes, object_id
        assert model.watertight == (object_id not in NOT_WATERTIGHT), object_id


def test_bad_object_inputs_get_errors_naming_the_file(tmp_path):
    catalog = ObjectCatalog.from_config()
    with pytest.raises(ObjectModelError, match="unknown object id 'no_such_object'"):
        catalog.load("no_such_object")
    with pytest.raises(ObjectModelError, match="missing.obj"):
        ObjectCatalog({"missing": {"mesh": "missing.obj"}}, tmp_path).load("missing")
    for name, mesh, complaint in (
        ("triangle", trimesh.Trimesh([[0, 0, 0], [0.1, 0, 0], [0, 0.1, 0]], [[0, 1, 2]]), "is not a solid: 1 faces"),
        ("millimetres", trimesh.creation.box([80.0, 50.0, 20.0]), "must be in metres"),
    ):
        mesh.export(tmp_path / f"{name}.obj")
        with pytest.raises(ObjectModelError, match=complaint):
            ObjectCatalog({name: {"mesh": str(tmp_path / f"{name}.obj")}}, tmp_path).load(name)
    (tmp_path / "garbage.obj").write_text("this is not a mesh\n")
    garbage = ObjectCatalog({"garbage": {"mesh": str(tmp_path / "garbage.obj")}}, tmp_path)
    with pytest.raises(ObjectModelError, match="garbage.obj"):
        garbage.load("garbage")


def test_nearest_points_are_the_exact_nearest_within_reach():
    """The triangle term's neighbour search: the exact nearest point (brute force), inf beyond
    max_distance, and no points or no queries give empty answers, not errors."""
    from tactile_pose_refiner.core.scene.distance import NearestPoints

    rng = np.random.default_rng(3)
    points = rng.normal(scale=0.05, size=(2000, 3))
    queries = rng.normal(scale=0.05, size=(300, 3)) + 0.03  # many far from the cloud's middle
    distance, index = NearestPoints(points).query(queries, max_distance=0.02)
    brute = np.linalg.norm(queries[:, None] - points[None], axis=2)
    nearest = brute.min(axis=1)
    within = nearest <= 0.02
    assert 0 < within.sum() < len(queries)
    np.testing.assert_allclose(distance[within], nearest[within], rtol=1e-12)
    np.testing.assert_array_equal(index[within], brute.argmin(axis=1)[within])
    assert np.isinf(distance[~within]).all()
    assert np.isinf(NearestPoints(np.zeros((0, 3))).query(queries, 0.1)[0]).all()
    assert NearestPoints(points).query(np.zeros((0, 3)), 0.1)[0].shape == (0,)


@pytest.mark.parametrize(
    "fx, fy, cx, complaint",
    [
        (1e30, 1e30, 320, "field of view"),
        (1.0, 1.0, 320, "field of view"),
        (600, 100, 320, "2:1"),
        (600, 600, 900, "principal point"),
    ],
)
def test_intrinsics_no_camera_has_are_named(fx, fy, cx, complaint):
    from tactile_pose_refiner.core.scene.camera import PinholeCamera

    assert PinholeCamera.from_config().implausible() is None
    assert complaint in PinholeCamera(640, 480, fx, fy, cx, 240).implausible()


def test_depth_with_no_return_is_missing_not_a_far_reading():
    from tactile_pose_refiner.core.scene.camera import depth_from_millimetres, depth_to_millimetres

    depth_m = np.array([[0.5234, np.inf, np.nan], [-0.1, 70.0, 65.535], [0.0, -np.inf, 1e-4]])
    expected = [[523, 0, 0], [0, 0, 65535], [0, 0, 0]]
    assert depth_to_millimetres(depth_m).tolist() == expected  # inf was 65535: a wall at 65.5 m
    assert depth_from_millimetres(depth_to_millimetres(depth_m))[0, 0] == pytest.approx(0.523)


def test_numpy_kinematics_of_the_sensor_nodes_match_the_differentiable_chain(hand):
    """joint_state_node and tactile_node place links with HandKinematics (numpy, no torch):
    the same link poses as pytorch-kinematics' chain the refiner differentiates through."""
    from tactile_pose_refiner.core.scene.kinematics import HandKinematics

    light = HandKinematics.from_config()
    assert light.joint_names == hand.joint_names
    rng = np.random.default_rng(3)
    for _ in range(5):
        q = rng.uniform(hand.lower, hand.upper)
        expected, got = hand.link_poses(q), light.link_poses(q)
        assert set(expected) <= set(got)
        for link, pose in expected.items():
            np.testing.assert_allclose(got[link], pose, atol=1e-6, err_msg=link)  # URDF rpy parsed twice
