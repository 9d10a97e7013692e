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
