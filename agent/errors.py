"""Errors of the agent package. Every error names the thing, the value and the limit."""


class AgentError(Exception):
    """Root of all agent errors."""


class MessageError(ValueError, AgentError):
    """A message that cannot be accepted: malformed, wrong schema version, NaN, out of bounds."""
