"""ROS-free core of tactile_pose_refiner.

Everything that computes lives here and depends only on numpy/torch/warp/trimesh-style
libraries. Nothing under this package may import rclpy or any ROS message module; the
test suite checks that in a fresh interpreter.
"""
