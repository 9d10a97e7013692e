"""The Xela server's stream (xela_server_ros2 `SensStream`) -> TactileReading.

The vendor message has no std_msgs/Header: `SensStream{SensorFull[] sensors}`, each
`SensorFull{uint32 message, float64 time, string model, uint8 sensor_pos, Taxel[] taxels,
Forces[] forces}` with raw 16-bit counts per taxel axis and `time` the server's Unix time [s].
A patch (sensor_pos) maps to consecutive global taxel ids of the layout: by default
sensor_pos k (from 1) is the k-th patch of config/xela_layout.yaml; `first_taxel` overrides.
The signal is the raw counts minus a zero-load baseline per taxel (the
first reading unless one is given): the same "sensor units" as the TactileArray.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from tactile_pose_refiner.core.scene.skin import SkinLayout, TactileInputError, TactileReading


class XelaStreamConverter:
    def __init__(
        self, layout: SkinLayout, first_taxel: Mapping[int, int] | None = None, force_scale: float = 0.0
    ) -> None:
        self.layout = layout
        if first_taxel is None:  # k-th patch of the layout, in order of appearance
            patches = list(dict.fromkeys(layout.patches))
            first_taxel = {k + 1: int(layout.ids[layout.patches.index(p)]) for k, p in enumerate(patches)}
        self.first_taxel = {int(k): int(v) for k, v in first_taxel.items()}
        self.force_scale = float(force_scale)
        self.baseline: dict[int, np.ndarray] = {}

    def convert(self, sensors: Sequence, fallback_stamp_ns: int) -> TactileReading:
        """sensors: objects with sensor_pos, time, taxels[.x .y .z]; raises TactileInputError."""
        ids, counts, stamps = [], [], []
        for sensor in sensors:
            position = int(sensor.sensor_pos)
            if position not in self.first_taxel:
                raise TactileInputError(
                    f"xela sensor_pos {position} is not a patch of the layout {sorted(self.first_taxel)}"
                )
            raw = np.array([[t.x, t.y, t.z] for t in sensor.taxels], dtype=np.float64).reshape(-1, 3)
            start = self.first_taxel[position]
            ids.extend(range(start, start + len(raw)))
            counts.append(raw - self.baseline.setdefault(position, raw.copy()))
            stamps.append(float(sensor.time))
        unknown = [i for i in ids if i not in self.layout.row_of_id]
        if unknown:
            raise TactileInputError(f"xela taxels {unknown[:5]}... are outside the skin layout")
        rows = [self.layout.row_of_id[i] for i in ids]
        stamp_ns = int(max(stamps) * 1e9) if stamps and max(stamps) > 0 else fallback_stamp_ns
        return TactileReading(
            link_names=tuple(self.layout.links[r] for r in rows),
            taxel_ids=np.array(ids, dtype=np.int64),
            positions=self.layout.positions[rows].reshape(-1, 3),
            forces=np.concatenate(counts) if counts else np.zeros((0, 3)),
            force_scale=self.force_scale,
            stamp_ns=stamp_ns,
        )
