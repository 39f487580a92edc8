"""Errors of the agent package. Every error names the thing, the value and the limit."""


class AgentError(Exception):
    """Root of all agent errors."""


class MessageError(ValueError, AgentError):
    """A message that cannot be accepted: malformed, wrong schema version, NaN, out of bounds."""


class AgentTimeoutError(TimeoutError, AgentError):
    """The agent service did not answer in time (absent, busy or unreachable)."""


class AgentRequestError(AgentError):
    """The agent service answered a request with an error envelope (the reason is the message)."""
