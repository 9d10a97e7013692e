"""Force-consistent episodes (`tpr generate --forces balanced`) and mass identification
(core/mass.py): the readings carry the object's weight and accelerations, and the mass comes
back from them; an episode whose load never turns in the hand says so instead of guessing."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from tactile_pose_refiner.core.mass import episode_mass, hand_contact_force, identify_mass
from tactile_pose_refiner.core.physics.body import RigidBody
from tactile_pose_refiner.core.resources import load_config
from tactile_pose_refiner.core.scene.kinematics import HandKinematics
from tactile_pose_refiner.sim.episode import EpisodeGenerator
from tactile_pose_refiner.sim.forces import object_motion

OBJECT = "008_pudding_box"  # seven taxels touch it: the wrench can be met exactly


def balanced_episode(steps: int, noise: bool) -> tuple[EpisodeGenerator, list]:
    generator = EpisodeGenerator("clean", forces="balanced")
    if not noise:
        generator.tactile = replace(generator.tactile, noise_std_units=0.0)
    _, frames = generator.episode(OBJECT, steps, seed=0)
    return generator, list(frames)


def test_balanced_readings_sum_to_mass_times_acceleration_minus_gravity():
    generator, frames = balanced_episode(12, noise=False)
    dynamics = frames[0].dynamics
    model = generator.catalog.load(OBJECT)

    body = RigidBody.from_mesh(model.geometry, model.mass_kg, model.com_m, model.inertia_kg_m2)
    motion = object_motion([f.T_cam_obj for f in frames], body.com, 1 / 30.0)
    gravity = np.array(dynamics["gravity_cam_m_s2"])
    hand = HandKinematics.from_config()
    assert dynamics["mass_kg"] == pytest.approx(body.mass) and frames[0].tactile.force_scale > 0
    for k, frame in enumerate(frames):
        pushed, _ = hand_contact_force(frame, generator.skin, hand, threshold=0.0)  # hand base frame [N]
        required = body.mass * frame.T_cam_base[:3, :3].T @ (motion.acceleration[k] - gravity)
        assert np.linalg.norm(pushed - required) < 1e-5, (k, pushed, required)  # SLSQP meets it to 1e-6 a component


def test_the_mass_comes_back_from_a_noisy_balanced_episode():
    generator, frames = balanced_episode(40, noise=True)
    model = generator.catalog.load(OBJECT)

    body = RigidBody.from_mesh(model.geometry, model.mass_kg, model.com_m, model.inertia_kg_m2)
    estimate = episode_mass(
        frames,
        [f.T_cam_obj for f in frames],
        body.com,
        np.array(frames[0].dynamics["gravity_cam_m_s2"]),
        generator.skin,
        HandKinematics.from_config(),
        float(load_config("tactile")["contact_threshold_units"]),
        load_config("mass"),
    )
    assert estimate.status == "ok" and estimate.turn_deg > 5
    assert estimate.mass_kg == pytest.approx(model.mass_kg, rel=0.03)
    assert 0 < estimate.std_kg < 0.05 * model.mass_kg


def test_a_load_that_never_turns_in_the_hand_is_too_little_motion_not_a_guess():
    loads = np.tile([[0.0, 0.0, 9.81]], (50, 1)) + np.random.default_rng(0).normal(0, 0.01, (50, 3))
    forces = 0.3 * loads + [0.5, -0.2, 1.0]  # mass 0.3 kg plus the skin's constant offset
    still = identify_mass(forces, loads)
    assert still.mass_kg is None and still.status.startswith("too little motion")
    turning = np.array([[9.81 * np.sin(a), 0.0, 9.81 * np.cos(a)] for a in np.linspace(-0.3, 0.3, 50)])
    moved = identify_mass(0.3 * turning + [0.5, -0.2, 1.0], turning)
    assert moved.status == "ok" and moved.mass_kg == pytest.approx(0.3, rel=1e-6)


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
    assert a["std_kg"] == pytest.approx(0.01 / np.sqrt(2))
    assert b["mass_kg"] is None and b["status"].startswith("too little motion")
    assert summary["mean_abs_error_pct"] == pytest.approx(0.0, abs=1e-9)
    assert summarise({"b": found["b"]}, {"b": 0.5})["mean_abs_error_pct"] is None
