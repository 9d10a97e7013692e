"""Episode generation: grasps, trajectories, sensor rendering (uses core.scene)."""
