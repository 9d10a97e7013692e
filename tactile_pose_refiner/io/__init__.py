"""Recorded data: rosbag2 episodes (read/write without a ROS install), Isaac Sim import."""
