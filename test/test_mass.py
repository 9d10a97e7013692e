"""Force-consistent episodes (`tpr generate --forces balanced`) and mass identification
(core/mass.py): the readings carry the object's weight and accelerations, and the mass comes
back from them; an episode whose load never turns in the hand says so instead of guessing."""

from __future__ import annotations

import functools
from dataclasses import replace

import numpy as np
import pytest

from tactile_pose_refiner.core.mass import (
    SkinCalibration,
    episode_mass,
    fill_dead_taxels,
    hand_contact_force,
    identify_mass,
    skin_forces,
    skin_readings,
)
from tactile_pose_refiner.core.physics.body import RigidBody
from tactile_pose_refiner.core.resources import load_config
from tactile_pose_refiner.core.scene.distance import MeshDistance
from tactile_pose_refiner.core.scene.kinematics import HandKinematics
from tactile_pose_refiner.sim.episode import EpisodeGenerator
from tactile_pose_refiner.sim.forces import friction_pyramid, holding_direction, holding_force, object_motion

OBJECT = "008_pudding_box"  # seven taxels touch it: the wrench can be met exactly


@functools.lru_cache(maxsize=2)  # tests read these frames and never change them
def balanced_episode(steps: int, noise: bool) -> tuple[EpisodeGenerator, list]:
    generator = EpisodeGenerator("clean", forces="balanced")
    if not noise:
        generator.tactile = replace(generator.tactile, noise_std_units=0.0)
    _, frames = generator.episode(OBJECT, steps, seed=0)
    return generator, list(frames)


def surface(model) -> MeshDistance:
    return MeshDistance(model.geometry.vertices, model.geometry.faces)


def mass_inputs(generator, frames, config: dict) -> tuple:
    """What episode_mass takes after the frames and poses (and OnlineMass takes), for a balanced episode."""
    model = generator.catalog.load(OBJECT)
    body = RigidBody.from_mesh(model.geometry, model.mass_kg, model.com_m, model.inertia_kg_m2)
    dynamics = frames[0].dynamics
    skin = SkinCalibration.of(dynamics, load_config("tactile"), config)
    gravity = np.array(dynamics["gravity_cam_m_s2"])
    return body.com, gravity, generator.skin, HandKinematics.from_config(), skin, config, surface(model)


def test_balanced_readings_sum_to_mass_times_acceleration_minus_gravity_inside_friction_cones():
    generator, frames = balanced_episode(30, noise=False)
    dynamics = frames[0].dynamics
    model = generator.catalog.load(OBJECT)

    body = RigidBody.from_mesh(model.geometry, model.mass_kg, model.com_m, model.inertia_kg_m2)
    motion = object_motion([f.T_cam_obj for f in frames], body.com, 1 / 30.0)
    gravity = np.array(dynamics["gravity_cam_m_s2"])
    hand = HandKinematics.from_config()
    everywhere = np.ones(len(generator.skin), bool)
    assert dynamics["mass_kg"] == pytest.approx(body.mass) and frames[0].tactile.force_scale > 0
    assert dynamics["frames_outside_friction_cones"] == 0  # the grasp holds the object the way the arm carries it
    for k, frame in enumerate(frames):
        forces = skin_forces(skin_readings(frame, generator.skin), SkinCalibration(0.0, np.inf))
        pushed = hand_contact_force(frame, generator.skin, hand, forces, everywhere)  # hand base frame [N]
        required = body.mass * frame.T_cam_base[:3, :3].T @ (motion.acceleration[k] - gravity)
        assert np.linalg.norm(pushed - required) < 1e-4, (k, pushed, required)  # BALANCE_TOLERANCE a component


def test_contacts_hold_gravity_only_where_their_cones_can_carry_it():
    normals = np.array([[0.0, 0.0, 1.0]] * 3)  # three contacts under the object, pushing up
    below = np.array([[0.03, 0.0, -0.05], [-0.015, 0.026, -0.05], [-0.015, -0.026, -0.05]])
    down = holding_direction(below, normals, np.zeros(3), mu=0.5, tilt_rad=0.2)
    assert down[2] < -0.9  # within 25 deg of straight down: 200 directions lie ~14 deg apart
    assert np.isinf(holding_force(below, np.zeros(3), friction_pyramid(normals, 0.5), np.array([1.0, 0.0, 0.0])))
    # two fingertips pushing the same way (the old generator's grasps): no direction holds
    same_way = np.array([[-0.96, 0.25, 0.12], [-0.35, -0.94, 0.06]])
    apart = np.array([[0.044, -0.026, -0.011], [0.020, 0.051, 0.007]])
    assert holding_direction(apart, same_way, np.zeros(3), mu=0.8, tilt_rad=0.5) is None
    pinch = np.array([[-1.0, 0.0, 0.0], [1.0, 0.0, 0.0]])  # two fingertips facing each other
    across = holding_direction(
        np.array([[0.03, 0.0, 0.0], [-0.03, 0.0, 0.0]]), pinch, np.zeros(3), mu=0.8, tilt_rad=0.1
    )
    assert abs(across[0]) > 0.9  # along the pinch: resting on the lower fingertip costs least


def test_crosstalk_is_undone_and_a_saturated_taxel_leaves_its_frame_out():
    generator, frames = balanced_episode(30, noise=False)
    skin = SkinCalibration(0.0, 10000.0, crosstalk_share=0.05, crosstalk_radius_m=0.006)
    exact = skin_forces(skin_readings(frames[0], generator.skin), SkinCalibration(0.0, np.inf))
    mixed = exact + 0.05 * generator.skin.neighbours(0.006) @ exact  # what a skin with crosstalk reads
    rows = np.searchsorted(generator.skin.ids, frames[0].tactile.taxel_ids)
    frame = replace(frames[0], tactile=replace(frames[0].tactile, forces=mixed[rows]))
    unmixed = skin_forces(skin_readings(frame, generator.skin), skin, skin.unmixing(generator.skin))
    assert unmixed == pytest.approx(exact, abs=1e-6)
    saturated = frame.tactile.forces.copy()
    saturated[np.argmax(np.abs(saturated).max(axis=1))] = 10000.0
    frame = replace(frame, tactile=replace(frame.tactile, forces=saturated))
    unmixed = skin_forces(skin_readings(frame, generator.skin), skin, skin.unmixing(generator.skin))
    everywhere = np.ones(len(unmixed), bool)
    pushed = hand_contact_force(frame, generator.skin, HandKinematics.from_config(), unmixed, everywhere)
    assert np.isnan(pushed).all()


def test_a_dead_taxel_at_a_patchs_rim_reads_like_its_rim_not_the_patchs_centre():
    """Taxel 0 (dead) between three rim neighbours reading ~100 and one at the patch's centre
    reading 2000: the median of the live ones, ~100 (their mean, 575, would add a push the
    object never felt); a live taxel keeps its reading, a dead one with no live neighbour 0."""
    rng = np.random.default_rng(0)
    frames = 5
    read = np.zeros((frames, 6, 3))
    read[:, 1:4, 2] = 100.0 + rng.normal(0.0, 5.0, (frames, 3))
    read[:, 4, 2] = 2000.0 + rng.normal(0.0, 5.0, frames)
    beside = np.zeros((6, 6))
    beside[0, 1:5] = beside[1:5, 0] = 1.0  # taxel 5: dead, alone
    filled = fill_dead_taxels(read, beside)
    assert filled[:, 0, 2] == pytest.approx(np.median(read[:, 1:5, 2], axis=1))
    assert (np.abs(filled[:, 0, 2] - 100.0) < 20.0).all()
    assert np.array_equal(filled[:, 1:5], read[:, 1:5]) and (filled[:, 5] == 0.0).all()


def test_the_mass_comes_back_from_a_noisy_balanced_episode():
    generator, frames = balanced_episode(40, noise=True)
    model = generator.catalog.load(OBJECT)

    estimate = episode_mass(frames, [f.T_cam_obj for f in frames], *mass_inputs(generator, frames, load_config("mass")))
    assert estimate.status == "ok" and estimate.turn_deg > 5 and estimate.unseen_taxels == 0
    assert estimate.mass_kg == pytest.approx(model.mass_kg, rel=0.03)
    assert 0 < estimate.std_kg < 0.05 * model.mass_kg


def test_a_dead_taxel_in_the_contact_is_told_apart_from_one_elsewhere():
    """The skin cannot see the load on a dead taxel in the contact: the estimate says so (and
    identify-mass leaves it out where an episode saw the whole contact); a dead taxel away from
    the object changes nothing."""
    generator, frames = balanced_episode(40, noise=True)
    model = generator.catalog.load(OBJECT)
    read = np.array([skin_readings(frame, generator.skin) for frame in frames])
    strongest, idle = np.argsort(np.linalg.norm(read, axis=2).mean(axis=0))[[-1, 0]]

    def estimate_with_dead(taxel):
        rows = np.searchsorted(generator.skin.ids, frames[0].tactile.taxel_ids)
        killed = []
        for frame in frames:
            forces = frame.tactile.forces.copy()
            forces[rows == taxel] = 0.0
            killed.append(replace(frame, tactile=replace(frame.tactile, forces=forces)))
        return episode_mass(killed, [f.T_cam_obj for f in frames], *mass_inputs(generator, frames, load_config("mass")))

    in_contact, elsewhere = estimate_with_dead(strongest), estimate_with_dead(idle)
    print(f"\ndead in the contact: {in_contact.mass_kg}, elsewhere: {elsewhere.mass_kg} (truth {model.mass_kg})")
    assert in_contact.unseen_taxels == 1 and elsewhere.unseen_taxels == 0
    assert elsewhere.mass_kg == pytest.approx(model.mass_kg, rel=0.03)


def test_episodes_that_saw_the_whole_contact_are_preferred_and_the_rest_labelled():
    from tactile_pose_refiner.core.mass import MassEstimate
    from tactile_pose_refiner.identify_mass import summarise

    seen, unseen = MassEstimate(0.2, 0.01, 100, 30.0, "ok"), MassEstimate(0.15, 0.005, 100, 30.0, "ok", 1)
    summary = summarise({"a": [seen, unseen], "b": [unseen]}, {"a": 0.2, "b": 0.2})
    a, b = summary["per_object"]["a"], summary["per_object"]["b"]
    assert a["mass_kg"] == pytest.approx(0.2) and a["status"] == "ok" and (a["episodes"], a["episodes_used"]) == (2, 1)
    assert b["mass_kg"] == pytest.approx(0.15) and b["status"].startswith("contact partly unseen")


def test_the_mass_while_carrying_is_refreshed_from_the_recent_frames():
    """OnlineMass (refiner_node mode:=track): nothing to tell from the first frames, then the
    mass from the window of recent frames, only when an estimate is due."""
    from tactile_pose_refiner.core.mass import OnlineMass

    generator, frames = balanced_episode(40, noise=True)
    model = generator.catalog.load(OBJECT)
    config = {**load_config("mass"), "online": {"window_s": 10.0, "every_s": 0.3}}
    online = OnlineMass(*mass_inputs(generator, frames, config))
    estimates = [online.add(frame, frame.T_cam_obj) for frame in frames]
    due = [k for k, estimate in enumerate(estimates) if estimate is not None]
    assert due == [0, 9, 18, 27, 36]  # 30 Hz stamps, one every 0.3 s
    assert estimates[0].mass_kg is None and estimates[0].status.startswith("too few frames")
    assert estimates[36].mass_kg == pytest.approx(model.mass_kg, rel=0.05) and online.latest is estimates[36]
    assert all(f.rgb is None and f.depth_mm is None for f, _ in online.window)  # images are not kept


def test_a_load_that_never_turns_in_the_hand_is_too_little_motion_not_a_guess():
    loads = np.tile([[0.0, 0.0, 9.81]], (50, 1)) + np.random.default_rng(0).normal(0, 0.01, (50, 3))
    forces = 0.3 * loads + [0.5, -0.2, 1.0]  # mass 0.3 kg plus the skin's constant offset
    still = identify_mass(forces, loads)
    assert still.mass_kg is None and still.status.startswith("too little motion")
    turning = np.array([[9.81 * np.sin(a), 0.0, 9.81 * np.cos(a)] for a in np.linspace(-0.3, 0.3, 50)])
    moved = identify_mass(0.3 * turning + [0.5, -0.2, 1.0], turning)
    assert moved.status == "ok" and moved.mass_kg == pytest.approx(0.3, rel=1e-6)
    pulled = identify_mass(
        -0.1 * turning + [0.5, -0.2, 1.0] + np.random.default_rng(1).normal(0, 0.05, (50, 3)), turning
    )
    assert pulled.mass_kg is None and pulled.status.startswith("no physical estimate")  # never a negative mass


def test_a_drifting_zero_widens_the_deviation_to_cover_the_error():
    """The skin's zero drifts (a random walk per axis): ordinary least squares takes the drift
    for load and reports a deviation that does not cover its error; the drift model's does."""
    turning = np.array([[9.81 * np.sin(a), 0.0, 9.81 * np.cos(a)] for a in 0.3 * np.sin(np.linspace(0, 6, 100))])
    covered = {"constant": [], "drifting": []}
    for seed in range(20):
        rng = np.random.default_rng(seed)
        drift = np.cumsum(rng.normal(0.0, 0.02, (100, 3)), axis=0)  # [N]: 0.2 N after 100 frames
        forces = 0.2 * turning + [0.5, -0.2, 1.0] + drift + rng.normal(0.0, 0.05, (100, 3))
        for name, ratios in (("constant", (0.0,)), ("drifting", (0.0, 0.01, 0.03, 0.1, 0.3, 1.0))):
            estimate = identify_mass(forces, turning, drift_ratios=ratios)
            covered[name].append(estimate.mass_kg is not None and abs(estimate.mass_kg - 0.2) < 2 * estimate.std_kg)
    constant, drifting = np.mean(covered["constant"]), np.mean(covered["drifting"])
    print(f"\nwithin 2 std: constant zero {constant:.0%}, drifting {drifting:.0%}")
    assert drifting >= 0.85 and constant < 0.7


def test_the_json_carries_the_contract_keys_and_no_number_where_nothing_was_estimated():
    from tactile_pose_refiner.core.mass import MassEstimate
    from tactile_pose_refiner.identify_mass import summarise

    found = {
        "a": [MassEstimate(0.21, 0.01, 100, 30.0, "ok"), MassEstimate(0.19, 0.01, 100, 30.0, "ok")],
        "b": [MassEstimate(None, None, 100, 2.0, "too little motion: ...")],
    }
    summary = summarise(found, {"a": 0.2, "b": 0.5})
    a, b = summary["per_object"]["a"], summary["per_object"]["b"]
    assert {"mass_kg", "truth_kg", "error_pct", "std_kg"} <= set(a)
    assert a["mass_kg"] == pytest.approx(0.2) and a["error_pct"] == pytest.approx(0.0, abs=1e-9)
    assert a["std_kg"] == pytest.approx(0.01 / np.sqrt(2)) and a["episodes_used"] == 2
    assert b["mass_kg"] is None and b["status"].startswith("too little motion")
    assert summary["mean_abs_error_pct"] == pytest.approx(0.0, abs=1e-9)
    assert summarise({"b": found["b"]}, {"b": 0.5})["mean_abs_error_pct"] is None


@pytest.mark.slow
def test_encoder_offsets_read_from_the_hands_depth_pixels_bring_the_joints_closer_to_the_truth():
    """A realistic episode's encoders are off by ~2 deg, constant over the episode; the median of
    the hand fit's corrections on a few frames takes part of that off every frame's joints, in
    the frame's own joint order."""
    from tactile_pose_refiner.core.mass import JointOffsets
    from tactile_pose_refiner.core.scene.assets import HandAssets

    _, frames = EpisodeGenerator("realistic", forces="balanced").episode("004_sugar_box", 10, seed=0)
    frames = list(frames)
    hand = HandKinematics.from_config()
    offsets = JointOffsets.from_depth(frames, HandAssets.from_config(), every=3)
    print(f"\n{offsets.status}")
    assert offsets.status.startswith("encoders corrected") and np.isfinite(offsets.offsets).all()

    def error_deg(frame):
        q = hand.joint_vector(frame.joint_names, frame.joint_positions)
        return np.degrees(np.sqrt(np.mean((q - hand.joint_vector(frame.joint_names, frame.joint_positions_true)) ** 2)))

    before, after = error_deg(frames[-1]), error_deg(offsets.applied(frames[-1], hand))
    print(f"joint error rms {before:.2f} -> {after:.2f} deg")
    assert after < 0.95 * before
    last = frames[-1]
    shuffled = replace(last, joint_names=last.joint_names[::-1], joint_positions=last.joint_positions[::-1])
    corrected = offsets.applied(shuffled, hand)
    assert corrected.joint_names == shuffled.joint_names
    np.testing.assert_allclose(
        hand.joint_vector(corrected.joint_names, corrected.joint_positions),
        hand.joint_vector(frames[-1].joint_names, frames[-1].joint_positions) + offsets.offsets,
    )
    assert JointOffsets.from_depth(frames, HandAssets.from_config(), every=0).applied(frames[-1], hand) is frames[-1]
