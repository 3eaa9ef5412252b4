"""The control law in pure Python + numpy: no ROS import, time passed in."""
from .base_controllers import PID, BaseController, ComputedTorque, PDGravity, make_base_controller
from .dynamics import NominalModel
from .errors import ConfigError, ModelError, ObservationError, PolicyOutputError
from .mixer import Mixer, MixerConfig, MixOutput, Mode, residual_bound_ok
from .observation import ObservationAssembler, default_observation_names
from .policy import ModelContract, PolicyExpectations, PolicyRunner

__all__ = [
    "PID", "BaseController", "PDGravity", "ComputedTorque", "make_base_controller", "NominalModel",
    "ConfigError", "ModelError", "ObservationError", "PolicyOutputError",
    "Mixer", "MixerConfig", "MixOutput", "Mode", "residual_bound_ok",
    "ObservationAssembler", "default_observation_names",
    "ModelContract", "PolicyExpectations", "PolicyRunner",
]
