"""`tpr import-isaac`: a Replicator-style folder written by the test becomes an episode."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from tactile_pose_refiner.cli import main as tpr
from tactile_pose_refiner.io.episode_bag import read_episode
from tactile_pose_refiner.sim.episode import EpisodeGenerator


def write_replicator_folder(root, frames) -> None:
    camera = frames[0].camera
    for sub in ("rgb", "depth", "instance_segmentation", "poses", "joints", "tactile"):
        (root / sub).mkdir(parents=True)
    (root / "camera.json").write_text(
        json.dumps(
            dict(
                width=camera.width,
                height=camera.height,
                fx=camera.fx,
                fy=camera.fy,
                cx=camera.cx,
                cy=camera.cy,
                frame_rate_hz=30.0,
                start_time_s=1700000000.0,
            )
        )
    )
    (root / "object.json").write_text(json.dumps({"object_id": frames[0].object_id}))
    for k, frame in enumerate(frames):
        Image.fromarray(np.dstack([frame.rgb, np.full(frame.rgb.shape[:2], 255, np.uint8)])).save(
            root / "rgb" / f"rgb_{k:04d}.png"
        )  # RGBA, as Replicator writes
        depth = np.where(frame.depth_mm > 0, frame.depth_m, np.inf).astype(np.float64)
        np.save(root / "depth" / f"distance_to_image_plane_{k:04d}.npy", depth)
        Image.fromarray((frame.mask > 0).astype(np.uint8) * 3).save(
            root / "instance_segmentation" / f"instance_segmentation_{k:04d}.png"
        )
        (root / "poses" / f"pose_{k:04d}.json").write_text(
            json.dumps({"object": frame.T_cam_obj.tolist(), "hand_base": frame.T_cam_base.tolist()})
        )
        (root / "joints" / f"joints_{k:04d}.json").write_text(
            json.dumps({"names": frame.joint_names, "positions": frame.joint_positions.tolist()})
        )
        np.save(root / "tactile" / f"tactile_{k:04d}.npy", frame.tactile.forces)


@pytest.fixture(scope="module")
def source_frames():
    return list(EpisodeGenerator().episode("010_potted_meat_can", 3, seed=2)[1])


def test_import_isaac_writes_the_same_episode_content(source_frames, tmp_path):
    write_replicator_folder(tmp_path / "isaac", source_frames)
    assert tpr(["import-isaac", str(tmp_path / "isaac"), "--out", str(tmp_path / "bag")]) == 0
    imported = list(read_episode(tmp_path / "bag"))
    assert len(imported) == len(source_frames)
    for a, b in zip(source_frames, imported):
        assert b.object_id == a.object_id and b.stamp_ns == a.stamp_ns
        assert np.array_equal(a.rgb, b.rgb) and np.array_equal(a.depth_mm, b.depth_mm)
        assert np.array_equal(a.mask, b.mask) and a.joint_names == b.joint_names
        np.testing.assert_array_equal(a.tactile.forces, b.tactile.forces)
        np.testing.assert_allclose(b.T_cam_obj, a.T_cam_obj, atol=1e-12)
        np.testing.assert_allclose(b.camera.K, a.camera.K)


def test_import_isaac_names_the_missing_file(source_frames, tmp_path, capsys):
    write_replicator_folder(tmp_path / "isaac", source_frames[:1])
    (tmp_path / "isaac" / "poses" / "pose_0000.json").unlink()
    assert tpr(["import-isaac", str(tmp_path / "isaac"), "--out", str(tmp_path / "bag")]) == 2
    assert "pose_0000.json" in capsys.readouterr().err
    assert not (tmp_path / "bag").exists()  # no partial episode left behind


USD_CAMERA_TO_OPTICAL = np.diag([1.0, -1.0, -1.0, 1.0])
T_WORLD_CAMERA = np.array(  # the optical frame in the world: turned and moved, not the identity
    [[0.0, -0.6, 0.8, 0.4], [1.0, 0.0, 0.0, -0.2], [0.0, 0.8, 0.6, 1.1], [0.0, 0.0, 0.0, 1.0]]
)
METERS_PER_UNIT = 0.01  # a stage in centimetres: lengths are scaled on import
OBJECT_PRIM, HAND_PRIM = "/World/Object", "/World/allegro/palm"


def usd_row(T_metres: np.ndarray) -> list[float]:
    """A column-vector transform in metres as USD writes it: row-vector, scene units, flat."""
    T = T_metres.copy()
    T[:3, 3] /= METERS_PER_UNIT
    return T.T.reshape(-1).tolist()


def write_basic_writer_folder(root, frames, colorize: bool = False) -> None:
    """What BasicWriter(rgb, distance_to_image_plane, instance_segmentation, camera_params)
    writes for one render product, and the capture script's tpr_<k>.json sidecar."""
    root.mkdir(parents=True)
    camera = frames[0].camera
    focal, aperture_x = 18.0, 18.0 * camera.width / camera.fx  # mm; fx = focal / aperture * width
    aperture_y = focal * camera.height / camera.fy
    view = USD_CAMERA_TO_OPTICAL @ np.linalg.inv(T_WORLD_CAMERA)  # world -> USD camera
    ids = {0: "BACKGROUND", 1: "UNLABELLED", 7: OBJECT_PRIM, 9: HAND_PRIM}
    colours = {key: (key * 20, 255 - key * 20, key, 255) for key in ids}
    for k, frame in enumerate(frames):
        Image.fromarray(np.dstack([frame.rgb, np.full(frame.rgb.shape[:2], 255, np.uint8)])).save(
            root / f"rgb_{k:04d}.png"
        )
        depth = np.where(frame.depth_mm > 0, frame.depth_m / METERS_PER_UNIT, np.inf).astype(np.float32)
        np.save(root / f"distance_to_image_plane_{k:04d}.npy", depth)
        instance = np.where(frame.mask > 0, 7, 9).astype(np.uint32)
        instance[:5] = 0
        if colorize:
            image = np.zeros(instance.shape + (4,), np.uint8)
            for key, colour in colours.items():
                image[instance == key] = colour
            Image.fromarray(image, "RGBA").save(root / f"instance_segmentation_{k:04d}.png")
            mapping = {str(colours[key]): path for key, path in ids.items()}
        else:
            Image.fromarray(instance.astype(np.uint16)).save(root / f"instance_segmentation_{k:04d}.png")  # 16 bit
            mapping = {str(key): path for key, path in ids.items()}
        (root / f"instance_segmentation_mapping_{k:04d}.json").write_text(json.dumps(mapping))
        semantics = {key: {"class": "mustard" if path == OBJECT_PRIM else "hand"} for key, path in mapping.items()}
        (root / f"instance_segmentation_semantics_mapping_{k:04d}.json").write_text(json.dumps(semantics))
        projection = np.diag([2 * focal / aperture_x, 2 * focal / aperture_y, 0.0, 0.0])
        params = {
            "cameraAperture": [aperture_x, aperture_y],
            "cameraApertureOffset": [0.0, 0.0],
            "cameraFocalLength": focal,
            "cameraModel": "pinhole",
            "cameraNearFar": [1.0, 1000000.0],
            "cameraProjection": projection.reshape(-1).tolist(),
            "cameraViewTransform": usd_row(view),
            "metersPerSceneUnit": METERS_PER_UNIT,
            "renderProductResolution": [camera.width, camera.height],
        }
        (root / f"camera_params_{k:04d}.json").write_text(json.dumps(params))
        sidecar = {
            "object_id": frame.object_id,
            "object_prim": OBJECT_PRIM,
            "object_world_transform": usd_row(T_WORLD_CAMERA @ frame.T_cam_obj),
            "hand_base_world_transform": usd_row(T_WORLD_CAMERA @ frame.T_cam_base),
            "joint_names": frame.joint_names,
            "joint_positions": frame.joint_positions.tolist(),
            "tactile_forces": frame.tactile.forces.tolist(),
            "time_s": frame.stamp_ns / 1e9,
        }
        (root / f"tpr_{k:04d}.json").write_text(json.dumps(sidecar))


@pytest.mark.parametrize("colorize", [False, True])
def test_a_basic_writer_folder_imports_with_the_generating_poses(source_frames, tmp_path, colorize):
    from tactile_pose_refiner.core.metrics import orientation_error_deg

    write_basic_writer_folder(tmp_path / "isaac", source_frames, colorize)
    assert tpr(["import-isaac", str(tmp_path / "isaac"), "--out", str(tmp_path / "bag")]) == 0
    imported = list(read_episode(tmp_path / "bag"))
    assert len(imported) == len(source_frames)
    for a, b in zip(source_frames, imported):
        for T_true, T in ((a.T_cam_obj, b.T_cam_obj), (a.T_cam_base, b.T_cam_base)):
            assert np.abs(T[:3, 3] - T_true[:3, 3]).max() < 1e-6  # m
            assert np.radians(orientation_error_deg(T, T_true)) < 1e-6  # rad
        assert b.object_id == a.object_id and abs(b.stamp_ns - a.stamp_ns) < 1000
        assert np.array_equal(a.rgb, b.rgb) and np.abs(a.depth_mm.astype(int) - b.depth_mm).max() <= 1
        assert np.array_equal(a.mask > 0, b.mask > 0)  # the object prim's instance only
        assert a.joint_names == b.joint_names
        np.testing.assert_allclose(b.tactile.forces, a.tactile.forces)
        assert abs(b.camera.fx - a.camera.fx) < 1e-6 and b.camera.cx == a.camera.width / 2 - 0.5


def test_a_basic_writer_folder_picks_the_object_by_semantic_label_and_names_a_missing_file(
    source_frames, tmp_path, capsys
):
    write_basic_writer_folder(tmp_path / "isaac", source_frames[:2])
    out = tmp_path / "bag"
    assert tpr(["import-isaac", str(tmp_path / "isaac"), "--out", str(out), "--label", "hand"]) == 0
    hand_mask = next(iter(read_episode(out))).mask
    assert hand_mask.any() and not (hand_mask & source_frames[0].mask).any()  # the hand, not the object
    (tmp_path / "isaac" / "distance_to_image_plane_0001.npy").unlink()
    assert tpr(["import-isaac", str(tmp_path / "isaac"), "--out", str(tmp_path / "bag2")]) == 2
    assert "distance_to_image_plane_0001.npy" in capsys.readouterr().err
    assert not (tmp_path / "bag2").exists()
