"""residual_control: learned residual policies on top of a trusted base controller, for ROS 2."""
__version__ = "0.1.0"
