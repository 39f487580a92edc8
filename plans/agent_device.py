"""The agent service as a named device, so services that hand plans their devices by name
hand them the agent too.

bluesky-queueserver and blueapi turn a name given in a queued plan (``agent="agent"``) into
the object of that name only for devices: queueserver for objects that are readable,
flyable or have ``children`` (ophyd-async devices), blueapi for objects that follow a
bluesky protocol or are ophyd-async devices. An ``AgentClient`` is neither: the agent
package knows positions and numbers, never devices. ``AgentDevice`` is an ophyd-async
``Device`` with no signals that holds the client, so a startup profile can offer::

    agent = AgentDevice("tcp://127.0.0.1:5580")      # name "agent"
    RE(gp_scan([scaler], sample_x, (-10, 10), sample_y, (-10, 10), agent=agent, ...))

``gp_scan`` accepts it or a bare ``AgentClient``.
"""

from typing import Any

from ophyd_async.core import Device

from agent.client import DEFAULT_REQUEST_ADDRESS, AgentClient


class AgentDevice(Device):
    """An ``AgentClient`` for the service at ``address`` (its request port), as a device
    called ``name``. ``timeout_s``: per request, s; ``client_options`` go to the client
    as they are (e.g. ``server_key``/``client_key`` for CURVE, ``session``). Connecting it
    connects nothing: the client opens its socket at the first request."""

    def __init__(self, address: str = DEFAULT_REQUEST_ADDRESS, timeout_s: float = 5.0,
                 name: str = "agent", **client_options: Any) -> None:
        super().__init__(name=name)
        self.client = AgentClient(address, timeout_s, **client_options)

    @property
    def address(self) -> str:
        return self.client.address

    def close(self) -> None:
        self.client.close()


def agent_client(agent: AgentDevice | AgentClient) -> AgentClient:
    """The client ``agent`` holds, or ``agent`` itself when it is not an ``AgentDevice``."""
    return agent.client if isinstance(agent, AgentDevice) else agent
