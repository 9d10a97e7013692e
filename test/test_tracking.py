"""Tracking: the second-order solver's derivatives, in-hand motion episodes, and the tracker on
them (prediction from the hand's motion, slip followed, a forced loss detected and recovered,
frames missing depth or touch)."""

from __future__ import annotations

import dataclasses
from functools import cache

import numpy as np
import pytest
import torch

from tactile_pose_refiner.core.geometry import invert, rotation_about
from tactile_pose_refiner.core.gradients.base import apply_delta
from tactile_pose_refiner.core.metrics import orientation_error_deg, position_error_cm
from tactile_pose_refiner.core.scene.assets import HandAssets, ObjectAssets
from tactile_pose_refiner.core.scene.objects import ObjectCatalog
from tactile_pose_refiner.core.tracking.solver import PoseSolver, ResidualBlock, SdfField
from tactile_pose_refiner.core.tracking.tracker import Tracker
from tactile_pose_refiner.sim.episode import EpisodeGenerator

import scenes
from scenes import stored_grasp

OBJECT = "006_mustard_bottle"
STEPS = 20


@cache
def assets() -> tuple[ObjectAssets, HandAssets]:
    return ObjectAssets.build(ObjectCatalog.from_config().load(OBJECT)), HandAssets.from_config()


@cache
def in_hand_episode():
    info, frames = EpisodeGenerator(motion="in_hand").replay(OBJECT, stored_grasp(OBJECT), steps=STEPS, seed=3)
    return info, list(frames)


def _near_surface_points(count: int = 300) -> np.ndarray:
    object_assets, _ = assets()
    rng = np.random.default_rng(0)
    return object_assets.model.geometry.sample(count, seed=1) + rng.normal(0, 0.003, (count, 3))


def test_sdf_field_matches_the_grid_and_finite_differences():
    object_assets, _ = assets()
    grid = object_assets.sdf
    points = np.concatenate([_near_surface_points(), grid.upper + [[0.01, 0.0, 0.02]]])  # one outside the grid
    value, gradient = SdfField(grid)(torch.as_tensor(points))
    np.testing.assert_allclose(value.numpy(), grid.sample(points), atol=1e-12)
    eps = 1e-7
    numeric = np.stack(
        [(grid.sample(points + eps * e) - grid.sample(points - eps * e)) / (2 * eps) for e in np.eye(3)], 1
    )
    error = np.abs(gradient.numpy() - numeric).max(axis=1)
    assert np.quantile(error, 0.95) < 1e-5  # the rest sit on cell faces, where the interpolant has a kink


@pytest.mark.parametrize("side", [0.0, -1.0])
def test_residual_jacobian_matches_finite_differences(side):
    object_assets, _ = assets()
    solver = PoseSolver(SdfField(object_assets.sdf), object_assets.body.com, object_assets.body.radius)
    T = rotation_about([0.3, -0.5, 0.8], 0.7)
    T[:3, 3] = [0.02, -0.01, 0.45]
    points = _near_surface_points() @ T[:3, :3].T + T[:3, 3]
    block = ResidualBlock(
        "test", torch.as_tensor(points), torch.full((len(points),), 0.001), 0.002, torch.full((len(points),), side)
    )
    _, jacobian = solver.residuals(T, block)
    numeric = np.zeros_like(jacobian.numpy())
    for k in range(6):
        step = np.zeros(6)
        step[k] = 1e-7
        plus, _ = solver.residuals(solver.moved(T, step), block)
        minus, _ = solver.residuals(solver.moved(T, -step), block)
        numeric[:, k] = ((plus - minus) / 2e-7).numpy()
    error = np.abs(jacobian.numpy() - numeric).max(axis=1) / np.abs(numeric).max()
    assert np.quantile(error, 0.95) < 1e-5
    if side < 0:  # a point outside the object costs nothing on a penetration block
        residual, _ = solver.residuals(T, block)
        assert (residual.numpy()[object_assets.sdf.sample(_near_surface_points()) > 0.001] == 0).all()


def test_twist_round_trip_and_ros_covariance():
    object_assets, _ = assets()
    solver = PoseSolver(SdfField(object_assets.sdf), object_assets.body.com, object_assets.body.radius)
    T = rotation_about([1.0, 2.0, 0.5], 0.4)
    twist = np.array([0.02, -0.05, 0.03, 0.004, 0.001, -0.002])
    np.testing.assert_allclose(solver.twist_between(T, solver.moved(T, twist)), twist, atol=1e-12)
    covariance = solver.covariance_ros(T, np.diag([4e4, 5e4, 6e4, 1e6, 2e6, 3e6]))
    np.testing.assert_allclose(covariance, covariance.T, atol=1e-15)
    assert np.linalg.eigvalsh(covariance).min() > 0


def test_in_hand_episode_moves_the_object_in_the_hand_and_the_fingers_follow():
    info, frames = in_hand_episode()
    T_base_obj = [invert(f.T_cam_base) @ f.T_cam_obj for f in frames]
    turned = orientation_error_deg(T_base_obj[0], T_base_obj[-1])
    moved_mm = 10 * position_error_cm(T_base_obj[0], T_base_obj[-1])
    assert turned > 0.5 or moved_mm > 0.5, (turned, moved_mm)
    assert info.motion["max_penetration_mm"] < 1.6  # the hand stops the object rather than sinking into it
    first, last = info.motion["regrasp_steps"]
    contacts = info.taxels_in_contact
    assert min(contacts[first:last]) < contacts[first - 1] and contacts[last] >= 1  # regrasp: lost, then made
    assert any(not np.allclose(frames[0].joint_positions, f.joint_positions) for f in frames[1:])  # fingers re-close


def _tracker() -> Tracker:
    object_assets, hand = assets()
    return Tracker(object_assets, hand)


def test_prediction_carries_the_hand_motion():
    _, frames = in_hand_episode()
    tracker = _tracker()
    T_base_obj = invert(frames[0].T_cam_base) @ tracker.start(frames[0], frames[0].T_cam_obj).T
    arm = rotation_about([0.0, 1.0, 0.0], 0.2)
    arm[:3, 3] = [0.03, 0.0, -0.02]
    moved = dataclasses.replace(
        frames[0], T_cam_base=arm @ frames[0].T_cam_base, stamp_ns=frames[0].stamp_ns + 33_000_000
    )
    result = tracker.step(moved)
    np.testing.assert_allclose(result.T_predicted, moved.T_cam_base @ T_base_obj, atol=1e-9)


def test_tracks_an_in_hand_episode_with_slip_within_its_bound():
    _, frames = in_hand_episode()
    tracker = _tracker()
    tracker.start(frames[0], frames[0].T_cam_obj)
    hand_only = invert(frames[0].T_cam_base) @ frames[0].T_cam_obj  # the object carried by the hand alone
    for frame in frames[1:]:
        result = tracker.step(frame)
        assert result.status.startswith("tracking"), result.status
        assert position_error_cm(result.T, frame.T_cam_obj) < 0.2
        assert orientation_error_deg(result.T, frame.T_cam_obj) < 2.0
        assert np.isfinite(result.covariance).all()
    carried = frames[-1].T_cam_base @ hand_only
    assert position_error_cm(result.T, frames[-1].T_cam_obj) < 0.5 * position_error_cm(carried, frames[-1].T_cam_obj)


def test_a_forced_loss_is_detected_and_recovered():
    _, frames = in_hand_episode()
    tracker = _tracker()
    tracker.start(frames[0], frames[0].T_cam_obj)
    tracker.step(frames[1])
    tracker.T_base_obj = apply_delta(tracker.T_base_obj, np.r_[0.03, 0, 0, np.radians(30), 0, 0], np.zeros(3))
    lost = tracker.step(frames[2])
    assert lost.lost, lost.status
    assert np.isfinite(lost.T).all()
    recovered = tracker.start(frames[3], frames[3].T_cam_obj)
    assert recovered.status.startswith("reinitialised") and not recovered.lost
    assert tracker.step(frames[4]).status.startswith("tracking")


def test_a_lost_track_recovers_by_itself_without_a_new_estimate():
    """The forced loss (3 cm / 30 deg) on an object the skin feels well: after
    recovery.every_frames lost frames the track restarts from its own last pose with hypotheses
    about it, before any estimate comes. Where depth does not vouch for the result (the
    mustard bottle's frame without touch settles 7 cm off at 78 % depth inliers) the track
    stays lost as it was and waits for an estimate."""
    object_id = "010_potted_meat_can"  # ~20 taxels in contact
    _, frames = EpisodeGenerator(motion="in_hand").replay(object_id, stored_grasp(object_id), steps=8, seed=3)
    frames = list(frames)
    tracker = Tracker(ObjectAssets.build(ObjectCatalog.from_config().load(object_id)), assets()[1])
    tracker.start(frames[0], frames[0].T_cam_obj)
    tracker.step(frames[1])
    tracker.T_base_obj = apply_delta(tracker.T_base_obj, np.r_[0.03, 0, 0, np.radians(30), 0, 0], np.zeros(3))
    lost = [tracker.step(frame) for frame in frames[2:5]]
    assert all(result.lost for result in lost) and tracker.recovery_due()
    recovered = tracker.recover(frames[5])
    assert "recovered by the track" in recovered.status and not recovered.lost, recovered.status
    assert position_error_cm(recovered.T, frames[5].T_cam_obj) < 0.2
    assert tracker.step(frames[6]).status.startswith("tracking")

    _, untouched = in_hand_episode()  # the mustard bottle: one taxel at most
    tracker = _tracker()
    tracker.start(untouched[0], untouched[0].T_cam_obj)
    tracker.T_base_obj = apply_delta(tracker.T_base_obj, np.r_[0.03, 0, 0, np.radians(30), 0, 0], np.zeros(3))
    tracker.lost_frames, kept = 3, tracker.T_base_obj.copy()
    refused = tracker.recover(untouched[5])
    assert refused.lost and "recovery not kept" in refused.status
    assert tracker.lost_frames == 4 and np.allclose(tracker.T_base_obj, kept)


def test_frames_without_depth_or_touch_give_labelled_finite_poses():
    _, frames = in_hand_episode()
    tracker = _tracker()
    tracker.start(frames[0], frames[0].T_cam_obj)
    no_depth = dataclasses.replace(frames[1], depth_mm=np.zeros_like(frames[1].depth_mm))
    result = tracker.step(no_depth)
    assert "degraded" in result.status and "depth points" in result.status
    assert np.isfinite(result.T).all() and position_error_cm(result.T, frames[1].T_cam_obj) < 0.5
    reading = frames[2].tactile
    untouched = dataclasses.replace(reading, forces=np.zeros_like(reading.forces))
    result = tracker.step(dataclasses.replace(frames[2], tactile=untouched))
    assert "no touch" in result.status and np.isfinite(result.T).all()
    bad_joints = dataclasses.replace(frames[3], joint_positions=np.full_like(frames[3].joint_positions, np.nan))
    result = tracker.step(bad_joints)
    assert result.lost and "joint states unusable" in result.status and np.isfinite(result.T).all()
    no_hand = dataclasses.replace(frames[4], T_cam_base=np.full((4, 4), np.nan))
    result = tracker.step(no_hand)
    assert result.lost and "hand base pose" in result.status and np.isfinite(result.T).all()


def test_a_start_from_paper_noise_lands_on_the_object():
    """Tracker.start (the bench's `lm` method) from the paper's 2.2 cm / 15 deg noise to within
    2 mm and 2 deg (on the realistic bench 1 of 40 such starts ends in a wrong basin)."""
    from tactile_pose_refiner.core.initial_noise import InitialPoseNoise

    object_id = "003_cracker_box"
    frame = scenes.frame(object_id)
    object_assets = ObjectAssets.build(ObjectCatalog.from_config().load(object_id))
    tracker = Tracker(object_assets, assets()[1])
    T0 = InitialPoseNoise("paper").noisy(frame.T_cam_obj, object_assets.body.com, f"{object_id}/start")
    result = tracker.start(frame, T0)
    assert position_error_cm(T0, frame.T_cam_obj) > 1.0
    assert position_error_cm(result.T, frame.T_cam_obj) < 0.2, result.stats
    assert orientation_error_deg(result.T, frame.T_cam_obj) < 2.0


def test_a_can_turned_about_its_axis_is_turned_back_by_its_texture():
    """Depth, touch and the hand cannot see a can's turn about its axis: the start's texture
    turn finds it (40 deg off here), the solver leaves it alone."""
    from tactile_pose_refiner.core.symmetry import turned

    object_id = "005_tomato_soup_can"
    frame = scenes.frame(object_id)
    object_assets = ObjectAssets.build(ObjectCatalog.from_config().load(object_id))
    tracker = Tracker(object_assets, assets()[1])
    assert tracker.texture.active
    T0 = turned(frame.T_cam_obj, tracker.texture.axis, object_assets.body.com, np.radians(40.0))
    result = tracker.start(frame, T0)
    assert orientation_error_deg(T0, frame.T_cam_obj) > 39.0
    assert orientation_error_deg(result.T, frame.T_cam_obj) < 2.0, result.turn_deg
    assert position_error_cm(result.T, frame.T_cam_obj) < 0.2


def test_without_a_camera_touch_refines_and_what_it_cannot_see_stays_as_it_started():
    """touch_only (camera off): touch and the hand's contact solved with the start as prior. From
    ten starts ~6 mm / 6 deg off, the four-finger grasp of the master chef can brings PE and OE
    well down; a turn about the can's axis, which nothing it touches can show, stays as it started."""
    from scipy.spatial.transform import Rotation

    from tactile_pose_refiner.core.pipeline import FrameRefiner
    from tactile_pose_refiner.core.symmetry import turned

    object_id = "002_master_chef_can"
    frame = dataclasses.replace(scenes.frame(object_id), rgb=None, depth_mm=None, mask=None)
    refiner = FrameRefiner(ObjectCatalog.from_config().load(object_id))
    truth, rng, errors = frame.T_cam_obj, np.random.default_rng(0), []
    for _ in range(10):
        offset = np.eye(4)
        offset[:3, :3] = Rotation.from_rotvec(np.radians(4.4) * rng.normal(size=3)).as_matrix()
        offset[:3, 3] = 0.004 * rng.normal(size=3)
        T_initial = truth @ offset
        refinement = refiner.refine(frame, T_initial, "touch_only")
        assert refinement.diagnostics.status == "ok" and refinement.diagnostics.start.startswith("touch lm")
        errors.append([position_error_cm(T_initial, truth), orientation_error_deg(T_initial, truth)])
        errors[-1] += [position_error_cm(refinement.T, truth), orientation_error_deg(refinement.T, truth)]
    start_pe, start_oe, pe, oe = np.mean(errors, axis=0)
    assert pe < 0.5 * start_pe and oe < 0.7 * start_oe
    ours = refiner.refine(frame, T_initial, "ours")  # the default variant with the camera off: the same solve
    np.testing.assert_allclose(ours.T, refinement.T, atol=1e-9)
    assert "touch lm" in ours.diagnostics.start and "render" in ours.diagnostics.status
    for variant in ("touch_only", "ours"):  # the solves' own errors were a LinAlgError, an empty argmin
        with pytest.raises(ValueError, match="initial pose must be a finite"):
            refiner.refine(frame, np.full((4, 4), np.nan), variant)

    axis = refiner.tracker.texture.axis
    spun = turned(truth, axis, refiner.object.body.com, np.radians(10.0))
    refinement = refiner.refine(frame, spun, "touch_only")
    assert orientation_error_deg(refinement.T, spun) < 0.5 and position_error_cm(refinement.T, spun) < 0.05


def test_command_line_names_of_spec_section_8():
    """Scripts outside the project call `tpr generate --motion arm|in_hand` and `tpr track --data
    DIR --json FILE` (SPEC §8)."""
    from tactile_pose_refiner.bench.track_bench import build_parser as track_parser
    from tactile_pose_refiner.cli import build_parser

    for motion in ("arm", "in_hand"):
        assert build_parser().parse_args(["generate", "--out", "DIR", "--motion", motion]).motion == motion
    assert build_parser().parse_args(["generate", "--out", "DIR"]).motion == "arm"
    args = track_parser().parse_args(["--data", "DIR", "--json", "FILE"])
    assert (args.data, args.json) == ("DIR", "FILE")


def test_a_start_takes_the_corrected_hand_where_there_is_one():
    """The full refinement's second-order start solves touch and the hand's contact against the
    hand it is given (the depth-corrected one), not the encoders' 2 deg off: at the true pose with
    the true hand the taxels in contact fit the surface to ~1 mm, with the encoders' to ~3.5 mm."""
    object_id = "002_master_chef_can"
    _, frames = EpisodeGenerator("realistic").replay(object_id, stored_grasp(object_id), steps=1, seed=0)
    frame = next(iter(frames))
    hand = HandAssets.from_config()
    tracker = Tracker(ObjectAssets.build(ObjectCatalog.from_config().load(object_id)), hand)
    encoders = tracker.start(frame, frame.T_cam_obj).stats["touch"]
    true = tracker.start(frame, frame.T_cam_obj, posed=hand.posed_true(frame)).stats["touch"]
    print(
        f"\ntouch rms at the start: encoders' hand {encoders['rms_mm']:.2f} mm, the true hand {true['rms_mm']:.2f} mm"
    )
    assert true["points"] == encoders["points"] >= 10
    assert true["rms_mm"] < 0.5 * encoders["rms_mm"]
