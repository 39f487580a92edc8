"""The ``beamagent`` console script as a scientist meets it: help for every subcommand with
its defaults and no reStructuredText, and one clear line (exit 2) for a missing or invalid
config file instead of a traceback. Each case runs the installed script in a subprocess."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from plans.cli import SUBCOMMANDS

BEAMAGENT = Path(sys.executable).parent / "beamagent"


def beamagent(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(BEAMAGENT), *args], capture_output=True, text=True, timeout=60,
                          cwd=cwd)


def test_top_level_help_lists_every_subcommand():
    result = beamagent("--help")
    assert result.returncode == 0
    for name, (_, help_text) in SUBCOMMANDS.items():
        assert name in result.stdout and help_text.split()[0] in result.stdout
    assert "``" not in result.stdout


# subcommand -> what its help must say (defaults, ports)
EXPECTED = {
    "sim": ["--port PORT", "(default: 5064)", "(default: 127.0.0.1)", "--config YAML"],
    "agent": ["--request-port PORT", "5580", "--measurement-port PORT", "5581",
              "--status-port PORT", "5582", "(default: INFO)"],
    "keys": ["directory", "default: one named 'client'"],
    "demo": ["(default: particles)", "(default: 150)", "(default: 0.05)", "(default: 20.0)",
             "--agent-config YAML", "--beamline-config YAML"],
    "align-demo": ["(default: beamline.yaml)", "(default: 0.2)", "(default: 100)"],
    "export": ["RUN.jsonl", "--nexus OUT.nxs", "--signal FIELD"],
}


@pytest.mark.parametrize("name", sorted(SUBCOMMANDS))
def test_subcommand_help_is_readable(name):
    result = beamagent(name, "--help")
    assert result.returncode == 0, result.stderr
    text = " ".join(result.stdout.split())  # argparse wraps lines
    for expected in EXPECTED.get(name, []):  # a newer subcommand: the generic checks
        assert expected in text, f"{expected!r} not in {name} --help:\n{result.stdout}"
    assert "``" not in text and ":func:" not in text
    assert "(default: None)" not in text and "(default: False)" not in text


@pytest.fixture(scope="module")
def bad_configs(tmp_path_factory):
    directory = tmp_path_factory.mktemp("configs")
    (directory / "broken.yaml").write_text("engine: [1,\n")
    (directory / "unknown_key.yaml").write_text("engine:\n  bogus: 1\n")
    return directory


CASES = [
    (("agent", "--config", "missing.yaml"), "beamagent agent: missing.yaml: No such file"),
    (("agent", "--config", "broken.yaml"), "beamagent agent: broken.yaml: not valid YAML at "
     "line 2, column 1"),
    (("agent", "--config", "unknown_key.yaml"), "beamagent agent: unknown_key.yaml: invalid "
     "config: "),
    (("sim", "--config", "missing.yaml", "--list"), "beamagent sim: missing.yaml: No such file"),
    (("sim", "--config", "broken.yaml", "--list"), "beamagent sim: broken.yaml: not valid YAML"),
    (("sim", "--config", "unknown_key.yaml", "--list"), "beamagent sim: unknown_key.yaml: "
     "invalid config: "),
    (("demo", "--agent-config", "missing.yaml", "--output", "out"),
     "beamagent demo: missing.yaml: No such file"),
    (("demo", "--beamline-config", "broken.yaml", "--output", "out"),
     "beamagent demo: broken.yaml: not valid YAML"),
    (("align-demo", "--config", "unknown_key.yaml", "--output", "out"),
     "beamagent align-demo: unknown_key.yaml: no 'beamline:' section"),
]


@pytest.mark.parametrize("args, message", CASES, ids=[" ".join(a[:3]) for a, _ in CASES])
def test_bad_config_is_one_line_and_exit_2(bad_configs, args, message):
    result = beamagent(*args, cwd=bad_configs)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    # the last line is the error (libraries may warn before it, e.g. setuptools_dso)
    assert result.stderr.strip().splitlines()[-1].startswith(message), result.stderr
    assert not (bad_configs / "out").exists(), "nothing is started or written"
