"""Initial pose estimators (paper §III-A's role): classical registration and a learned
visuo-tactile network, both ROS-free; `make_estimator` picks one by name."""

from __future__ import annotations

from tactile_pose_refiner.core.resources import load_config

ESTIMATORS = ("classical", "learned")


class CheckpointError(RuntimeError):
    """No usable checkpoint for the learned estimator; the message says how to train one. Here,
    not in learned.py: catching it must not import torch."""


def make_estimator(name: str, model, hand=None, config: dict | None = None, cloud=None):
    """The named estimator for one object model (ObjectModel). Raises ValueError for an unknown
    name and CheckpointError when the learned one has no checkpoint for the object."""
    from tactile_pose_refiner.core.estimation.model_cloud import ModelCloud
    from tactile_pose_refiner.core.scene.assets import HandAssets

    if name not in ESTIMATORS:
        raise ValueError(f"unknown estimator {name!r}; known: {', '.join(ESTIMATORS)}")
    config = config or load_config("estimator")
    hand = hand or HandAssets.from_config()
    cloud = cloud or ModelCloud.build(model, config["model"], config["symmetry"])
    if name == "classical":
        from tactile_pose_refiner.core.estimation.classical import ClassicalEstimator

        return ClassicalEstimator(cloud, hand, config)
    from tactile_pose_refiner.core.estimation.learned import LearnedEstimator

    return LearnedEstimator(cloud, hand, config)
