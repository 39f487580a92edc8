"""One line for a config file that failed to load, shared by every ``beamagent`` subcommand."""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError
from yaml import MarkedYAMLError


def config_error_line(path: str | Path, exc: BaseException) -> str:
    """``"<path>: <what is wrong>"`` for a config file that is missing, not YAML, or invalid
    (at most three validation errors, with their keys), for a message without a traceback."""
    if isinstance(exc.__cause__, ValidationError | MarkedYAMLError | OSError):
        exc = exc.__cause__
    if isinstance(exc, ValidationError):
        errors = exc.errors()
        what = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'top level'}: {e['msg']}"
                         for e in errors[:3])
        more = f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""
        return f"{path}: invalid config: {what}{more}"
    if isinstance(exc, MarkedYAMLError) and exc.problem_mark is not None:
        mark = exc.problem_mark
        return (f"{path}: not valid YAML at line {mark.line + 1}, column {mark.column + 1}: "
                f"{exc.problem}")
    if isinstance(exc, OSError):
        return f"{path}: {exc.strerror or exc}"
    text = " ".join(str(exc.args[0] if isinstance(exc, KeyError) and exc.args else exc).split())
    return text if text.startswith(str(path)) else f"{path}: {text}"
