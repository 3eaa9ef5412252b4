"""Shared fixtures. Every test run uses its own ROS domain on localhost only."""
import os
import random

import pytest

# Before rclpy is imported anywhere: a private domain, localhost discovery.
os.environ.setdefault("ROS_DOMAIN_ID", str(random.randint(101, 200)))
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
if os.environ.get("ROS_DISTRO") == "humble":  # Humble ignores the line above; newer ones deprecate this
    os.environ["ROS_LOCALHOST_ONLY"] = "1"
os.environ.setdefault("PYTHONUNBUFFERED", "1")



@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item, nextitem):
    """Fail a module that leaves rclpy initialized, by name, instead of every later module's rclpy.init().

    Checked after the fixtures' clean-up, when the next test belongs to another module (module-scoped
    graph fixtures keep rclpy up for their own module and shut it down at its end).
    """
    yield
    if nextitem is not None and nextitem.module is item.module:
        return
    import sys

    rclpy = sys.modules.get("rclpy")
    if rclpy is not None and rclpy.ok():
        rclpy.shutdown()
        raise RuntimeError(f"{item.module.__name__} left rclpy initialized (call rclpy.shutdown() in its clean-up)")
