"""The turn of an axially symmetric object (a can) about its axis, from the image's texture.

Depth, touch and the hand cannot see a can turn about its own axis, so a tracked can drifts
about it as the fingers roll it (measured: tuna fish can 28 deg mean OE over 100 realistic
in-hand frames, the other objects < 1 deg). After each solve the pose is turned, on a grid about
the axis, to where the model's texture colours best match the image (mean-removed colours of the
camera-facing surface samples whose depth agrees with the scene's), as the full refiner turns
its output to the lowest L_DR (core/symmetry.py) but with a colour cost cheap enough per frame.
"""

from __future__ import annotations

import numpy as np

from tactile_pose_refiner.core.estimation.model_cloud import colour_cost, coloured_samples
from tactile_pose_refiner.core.frame import Frame
from tactile_pose_refiner.core.scene.objects import ObjectModel
from tactile_pose_refiner.core.symmetry import object_symmetry_axis, turn_to_lowest


class TextureTurn:
    """The texture turn of one object: active where its inertia has a symmetry axis."""

    def __init__(self, model: ObjectModel, inertia: np.ndarray, centre: np.ndarray, config: dict) -> None:
        tolerance = float(config["moment_tolerance"])
        self.axis = (
            object_symmetry_axis(model.symmetry, inertia, tolerance, model.geometry, centre)
            if config["enabled"]
            else None
        )
        self.centre = np.asarray(centre, dtype=np.float64)
        self.config = config
        if self.axis is not None:
            self.points, self.normals, self.colours = coloured_samples(model, int(config["surface_points"]), 0)

    @property
    def active(self) -> bool:
        return self.axis is not None

    def turn(self, T: np.ndarray, frame: Frame, start: bool = False) -> tuple[np.ndarray, float]:
        """T turned about the axis to the lowest colour cost on the configured grids (start: the
        wider ones of a (re)initialisation, whose pose may be many degrees off), and the turn
        [deg]; T itself where the object is not symmetric or the frame has no image."""
        if self.axis is None or frame.rgb is None or frame.depth_mm is None:
            return T, 0.0
        depth_m, tolerance = frame.depth_m, float(self.config["depth_tolerance_mm"]) * 1e-3

        def score(pose: np.ndarray) -> float:
            return colour_cost(
                self.points, self.normals, self.colours, pose, frame.camera, frame.rgb, depth_m, tolerance
            )

        grids = self.config["start_grids_deg" if start else "grids_deg"]
        return turn_to_lowest(T, self.axis, self.centre, score, grids)
