"""The root exception of the simulator package."""


class SimError(Exception):
    """Root of every error raised by ``sim``."""


class SimConfigError(ValueError, SimError):
    """The ``simulation:`` section (or its cross-check with ``beamline:``) is invalid."""


class MotorLimitError(ValueError, SimError):
    """A motor record put is outside the soft limits; the IOC rejects it with a CA error."""


class PortInUseError(OSError, SimError):
    """The CA server port is already taken on the interface."""
