"""Xela tactile skin readings (ROS-free counterpart of msg/TactileArray)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


class TactileInputError(ValueError):
    """A tactile reading is malformed; the message says which field and why."""


@dataclass(frozen=True)
class TactileReading:
    """One reading of the skin, one row per taxel.

    link_names: (N,) hand link each taxel sits on.
    taxel_ids:  (N,) uint16 global taxel index in the layout.
    positions:  (N, 3) float64 taxel centres in their link frame [m].
    forces:     (N, 3) float64 3-axis signal in sensor units (z normal to the patch).
    force_scale: sensor units -> newtons; 0.0 when uncalibrated.
    stamp_ns:   acquisition time [ns].
    """

    link_names: tuple[str, ...]
    taxel_ids: np.ndarray
    positions: np.ndarray
    forces: np.ndarray
    force_scale: float = 0.0
    stamp_ns: int = 0

    def __post_init__(self) -> None:
        count = len(self.link_names)
        taxel_ids = np.asarray(self.taxel_ids)
        positions = np.asarray(self.positions, dtype=np.float64).reshape(-1, 3)
        forces = np.asarray(self.forces, dtype=np.float64).reshape(-1, 3)
        for field, rows in (("taxel_ids", len(taxel_ids)), ("positions", len(positions)),
                            ("forces", len(forces))):
            if rows != count:
                raise TactileInputError(
                    f"tactile reading: {field} has {rows} entries, link_names has {count}")
        if taxel_ids.size and (taxel_ids.min() < 0 or taxel_ids.max() > np.iinfo(np.uint16).max):
            raise TactileInputError("tactile reading: taxel_ids must fit in uint16")
        if not np.isfinite(positions).all():
            raise TactileInputError("tactile reading: positions contain NaN or inf")
        if not np.isfinite(forces).all():
            raise TactileInputError("tactile reading: forces contain NaN or inf")
        if not np.isfinite(self.force_scale) or self.force_scale < 0:
            raise TactileInputError(f"tactile reading: force_scale {self.force_scale} must be >= 0")
        object.__setattr__(self, "link_names", tuple(self.link_names))
        object.__setattr__(self, "taxel_ids", taxel_ids.astype(np.uint16))
        object.__setattr__(self, "positions", positions)
        object.__setattr__(self, "forces", forces)

    def __len__(self) -> int:
        return len(self.link_names)

    def in_contact(self, threshold: float) -> np.ndarray:
        """(N,) bool: taxels whose force magnitude exceeds `threshold` (sensor units)."""
        return np.linalg.norm(self.forces, axis=1) > threshold
