"""The shipped configuration files and the schema of the ``beamline:`` section.

A neutral package: ``sim`` and ``devices`` both import :mod:`configs.schema`, and neither
imports the other. The YAML files are package data, so an installed wheel finds them too::

    from configs import config_path
    config_path("beamline.yaml")     # absolute path of the shipped file
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

SHIPPED = ("beamline.yaml", "beamline_imperfect.yaml", "beamline_optics_hard.yaml", "agent.yaml")


def config_path(name: str) -> Path:
    """Path of the shipped config file ``name``. Raises FileNotFoundError listing the shipped."""
    path = Path(str(files(__name__).joinpath(name)))
    if not path.is_file():
        raise FileNotFoundError(f"no shipped config {name!r}; shipped: {list(SHIPPED)}")
    return path


DEFAULT_BEAMLINE = config_path("beamline.yaml")
DEFAULT_AGENT = config_path("agent.yaml")
