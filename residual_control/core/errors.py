"""Exceptions of the core. Every message names what was expected and what was found."""


class ResidualControlError(ValueError):
    """Base class of the package's validation errors."""


class ConfigError(ResidualControlError):
    """A parameter or configuration value is invalid."""


class ModelError(ResidualControlError):
    """A policy model file is missing, corrupt or does not match the configuration."""


class ObservationError(ResidualControlError):
    """An observation is malformed (size, finiteness, names)."""


class PolicyOutputError(ResidualControlError):
    """The policy produced an output that must not be passed on."""


def describe(value) -> str:
    """Short, bounded text of a value for error messages.

    A string is quoted as a whole (never spelled out as a list of its
    characters); arrays (``array.array`` from rclpy, numpy) read as lists.
    """
    if not isinstance(value, (str, bytes)) and callable(getattr(value, "tolist", None)):
        try:
            value = value.tolist()
        except (TypeError, ValueError):
            pass
    text = repr(value)
    return text if len(text) <= 120 else text[:117] + "..."
