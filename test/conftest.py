"""Shared fixtures. Every test run uses its own ROS domain on localhost only."""
import os
import random

# Before rclpy is imported anywhere: a private domain, localhost discovery.
os.environ.setdefault("ROS_DOMAIN_ID", str(random.randint(101, 200)))
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
if os.environ.get("ROS_DISTRO") == "humble":  # Humble ignores the line above; newer ones deprecate this
    os.environ["ROS_LOCALHOST_ONLY"] = "1"
os.environ.setdefault("PYTHONUNBUFFERED", "1")
