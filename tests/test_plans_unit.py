"""Narrow unit tests of the plan library's argument checks (no hardware)."""

import pytest

from plans.errors import PlanArgumentError
from plans.gp_scan import check_agent, parse_motor_bounds


class _Motor:
    def __init__(self, name):
        self.name = name


AGENT = {"coordinates": [{"name": "x", "low": -1.0, "high": 1.0, "units": "mm"}],
         "stop": {"max_points": None, "max_time_s": None, "target_uncertainty": None,
                  "uncertainty_statistic": "max"}}


def test_parse_motor_bounds_pairs_motors_with_bounds():
    m1, m2 = _Motor("a"), _Motor("b")
    motors, bounds = parse_motor_bounds([m1, (0, 1), m2, (-2, 2)])
    assert motors == [m1, m2] and bounds == [(0.0, 1.0), (-2.0, 2.0)]


@pytest.mark.parametrize("args", [[], [_Motor("a")], [_Motor("a"), (1,)], [_Motor("a"), "xy"]])
def test_parse_motor_bounds_refuses_malformed(args):
    with pytest.raises(PlanArgumentError):
        parse_motor_bounds(args)


def test_no_stop_condition_is_refused():
    with pytest.raises(PlanArgumentError, match="no stop condition"):
        check_agent(AGENT, [_Motor("m")], [(-1.0, 1.0)], max_points=None)
    assert check_agent(AGENT, [_Motor("m")], [(-1.0, 1.0)], max_points=5) == ["x"]


def test_motor_count_must_match_agent_coordinates():
    with pytest.raises(PlanArgumentError, match="1 coordinates"):
        check_agent(AGENT, [_Motor("m"), _Motor("n")], [(-1, 1), (-1, 1)], max_points=5)


def test_units_must_match_agent_coordinates():
    with pytest.raises(PlanArgumentError, match="moves in 'um'.*in 'mm'"):
        check_agent(AGENT, [_Motor("m")], [(-1.0, 1.0)], max_points=5, units=["um"])
    assert check_agent(AGENT, [_Motor("m")], [(-1.0, 1.0)], max_points=5, units=["mm"]) == ["x"]
    assert check_agent(AGENT, [_Motor("m")], [(-1.0, 1.0)], max_points=5, units=[""]) == ["x"]
