"""rclpy adapters around the core, one module per node (parse message -> core -> publish)."""
