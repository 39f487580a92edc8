"""Errors raised by plans. Each names the thing, the value and the limit."""


class PlanError(Exception):
    """Root of all plan errors."""


class PlanArgumentError(ValueError, PlanError):
    """A plan was called with arguments it refuses before the first move."""


class MoveVerificationError(RuntimeError, PlanError):
    """A motor reported its move done but the readback is not at the target."""
