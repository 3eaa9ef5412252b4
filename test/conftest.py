"""Shared fixtures. Every test run uses its own ROS domain on localhost only."""
import os
import random

# Before rclpy is imported anywhere: a private domain, localhost discovery.
os.environ.setdefault("ROS_DOMAIN_ID", str(random.randint(101, 200)))
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ.setdefault("PYTHONUNBUFFERED", "1")
