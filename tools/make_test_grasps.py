#!/usr/bin/env python3
"""Write test/data/grasps.json: one generated grasp per catalog object (seed 0).

Grasp synthesis takes 1.5-30 s per object, so tests read these fixed grasps instead of
synthesising them; re-run after changing the hand, the objects or the grasp generator.
Usage: .venv/bin/python tools/make_test_grasps.py [--out test/data/grasps.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from tqdm import tqdm

from tactile_pose_refiner.core.scene.distance import MeshDistance
from tactile_pose_refiner.sim.episode import EpisodeGenerator


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "test/data/grasps.json"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    generator = EpisodeGenerator()
    grasps = {}
    for object_id in tqdm(generator.catalog.ids, desc="grasps"):
        model = generator.catalog.load(object_id)
        distance = MeshDistance(model.geometry.vertices, model.geometry.faces)
        grasp = generator.grasps.synthesize(model, distance, np.random.default_rng(args.seed))
        grasps[object_id] = {
            "q": grasp.q.tolist(),
            "T_base_obj": grasp.T_base_obj.tolist(),
            "fingers_in_contact": grasp.fingers_in_contact,
            "max_penetration_m": grasp.max_penetration_m,
        }
    Path(args.out).write_text(json.dumps({"seed": args.seed, "grasps": grasps}, indent=1) + "\n")
    print(f"wrote {len(grasps)} grasps to {args.out}")


if __name__ == "__main__":
    main()
