"""Thin rclpy adapters: one module per executable."""
