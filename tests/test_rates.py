"""Error rates, flapping and latency baselines as pure rules: recorded sequences, injected times."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.baseline import Baselines, LatencyWindow
from agent.flapping import FlapHistory, FlapRule, change_share, next_flapping
from agent.incidents import CheckState, HealBudget, HealPolicy, Policy, evaluate
from agent.rates import CheckRates, ErrorWindow, RateRule, Rates, parse_rate_rule

# --- open_when: the grammar ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        ("error_rate > 10% over 5m", RateRule(10.0, 300.0)),
        ("error_rate >= 2.5% over 90s", RateRule(2.5, 90.0, inclusive=True)),
        ("  error_rate>50%   over 1h ", RateRule(50.0, 3600.0)),
        ("error_rate >= 100% over 1m", RateRule(100.0, 60.0, inclusive=True)),
    ],
)
def test_open_when_reads_its_tiny_grammar(text: str, rule: RateRule) -> None:
    assert parse_rate_rule(text) == rule
    assert parse_rate_rule(str(rule)) == rule  # the normalized text reads back the same


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("error_rate > 10 over 5m", "expected 'error_rate > N% over DURATION'"),
        ("errors > 10% over 5m", "expected 'error_rate > N% over DURATION'"),
        ("error_rate < 10% over 5m", "expected 'error_rate > N% over DURATION'"),
        ("error_rate > 10% over 5 minutes", "expected 'error_rate > N% over DURATION'"),
        ("error_rate > 10% over soon", "'soon' is not a duration"),
        ("error_rate > 101% over 5m", "never exceeds 101%"),
        ("error_rate > 100% over 5m", "never exceeds 100%"),
        ("error_rate > 10% over 0s", "longer than 0s"),
        ("error_rate > 10% over 2d", "at most 1d"),
        (10, "expected 'error_rate > N% over DURATION'"),
    ],
)
def test_open_when_refuses_what_it_cannot_read(text: object, says: str) -> None:
    with pytest.raises(ValueError, match=None) as caught:
        parse_rate_rule(text)
    assert says in str(caught.value)


def test_error_window_keeps_the_results_of_its_last_seconds_only() -> None:
    window = ErrorWindow(60.0)
    assert window.add(0, False) == 100.0
    assert window.add(30, True) == 50.0
    assert window.add(59, True) == pytest.approx(100 / 3)
    assert window.add(60, True) == 0.0  # the failing result at 0 is out: (0, 60] is kept
    assert window.add(200, False) == 100.0  # a gap longer than the window empties it


# --- open_when: the state machine as a script ------------------------------------------------------


class Script:
    """Feeds results (with their rates) at given times and keeps the machine's decisions."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.budget = HealBudget()
        self.state = CheckState()
        self.rates = CheckRates(policy.open_when, policy.flapping)
        self.n = 0
        self.messages: list[str] = []

    def feed(self, ok: bool, at: float) -> list[str]:
        rates = self.rates.observe(at, ok)
        t = evaluate(self.state, ok, at, self.policy, self.budget, now=at, message="m",
                     new_incident_id=lambda: f"inc_{self.n + 1}", rates=rates)
        if "open" in t.kinds():
            self.n += 1
        self.state = t.state
        if t.heal is not None:
            self.budget.record(t.heal, at)
        self.messages += [d.message for d in t.decisions]
        return t.kinds()


def test_open_when_opens_on_the_first_failing_result_past_the_share_and_ignores_open_after() -> None:
    s = Script(Policy(open_after=3600, resolve_after=2, open_when=parse_rate_rule("error_rate > 10% over 5m")))
    for at in range(0, 300, 10):  # 30 passing results
        assert s.feed(True, at) == []
    assert s.feed(False, 300) == []  # 1 of 30 in (0, 300]
    assert s.feed(False, 310) == []  # 2 of 30
    assert s.feed(True, 320) == []
    assert s.feed(False, 330) == []  # 3 of 30: 10% is not above 10%
    assert s.feed(False, 340) == ["open"]  # 4 of 30
    assert s.state.incident_id == "inc_1"
    assert s.messages == ["error rate 13.3% (error_rate > 10% over 5m): m"]
    assert s.feed(False, 350) == []  # one incident
    assert s.feed(True, 360) == []
    assert s.feed(True, 370) == ["resolve"]  # resolve_after still resolves
    assert s.feed(False, 380) == ["open"]  # the share is still past 10%: the next failure opens again


def test_open_when_at_or_above_counts_the_threshold_itself() -> None:
    s = Script(Policy(open_after=0, resolve_after=1, open_when=parse_rate_rule("error_rate >= 50% over 1m")))
    assert s.feed(True, 0) == []
    assert s.feed(True, 10) == []
    assert s.feed(False, 20) == []  # 1 of 3
    assert s.feed(False, 30) == ["open"]  # 2 of 4 = 50%


def test_a_passing_result_never_opens_whatever_the_share() -> None:
    s = Script(Policy(open_after=0, resolve_after=1, open_when=parse_rate_rule("error_rate >= 0% over 1m")))
    assert s.feed(True, 0) == []
    assert s.feed(False, 1) == ["open"]


# --- flapping ----------------------------------------------------------------------------------------


def test_flap_share_weighs_recent_changes_more_and_counts_missing_results_as_unchanged() -> None:
    assert change_share([], 20) == 0.0
    assert change_share([True], 20) == 0.0
    assert change_share([True, False], 20) == pytest.approx(100 * 1.2 / 20)  # the newest weighs 1.2
    every = [i % 2 == 0 for i in range(21)]
    assert change_share(every, 20) == pytest.approx(100.0)
    old_change = [False] + [True] * 20  # the oldest transition only: weight 0.8
    assert change_share(old_change, 20) == pytest.approx(100 * 0.8 / 20)
    assert change_share([True, False] * 30, 20) == pytest.approx(100.0)  # only the last 21 count


def test_flapping_starts_above_high_and_stops_only_below_low() -> None:
    rule = FlapRule(window=20, high=50, low=25)
    assert next_flapping(False, 50.0, rule) is False
    assert next_flapping(False, 50.1, rule) is True
    assert next_flapping(True, 30.0, rule) is True
    assert next_flapping(True, 25.0, rule) is True
    assert next_flapping(True, 24.9, rule) is False


def test_flap_history_keeps_its_window_and_resizes() -> None:
    history = FlapHistory(4)
    shares = [history.add(ok) for ok in (True, False, True, False, True, False)]
    assert shares[-1] == pytest.approx(100.0)
    assert history.resized(2).add(False) == pytest.approx(100 * 0.8 / 2)  # F,F: the last change only


def flapping_policy(**changes: object) -> Policy:
    heal = HealPolicy(target="main", max_restarts=100, within=3600, cooldown=0, kind="flip", verb="flip",
                      verb_ing="flipping", noun="switch")
    return Policy(**({"open_after": 0.0, "resolve_after": 2, "heal": heal, "flapping": FlapRule()} | changes))  # type: ignore[arg-type]


def test_an_alternating_check_keeps_one_incident_marked_flapping_and_stops_healing() -> None:
    s = Script(flapping_policy())
    kinds = [s.feed(i % 2 == 1, float(i)) for i in range(30)]  # fail, ok, fail, ok …
    assert kinds[0] == ["open", "heal"]
    assert kinds[1] == ["heal_succeeded"]
    assert kinds[2] == ["heal"]
    assert kinds[9] == ["flapping_started"]  # 9 changes of the last 20 weigh 50.2%
    assert all(k == [] for k in kinds[10:])  # no heal, no resolve, no second incident
    assert s.n == 1 and s.state.flapping is True
    assert s.messages[-1] == "flapping: 50.2% of the last 20 results changed state (weighted; high 50%, low 25%)"
    # It settles: the incident stays open while the share is still above low, then stops and resolves.
    settled = [s.feed(True, 30.0 + i) for i in range(20)]
    stop = next(i for i, k in enumerate(settled) if k)
    assert settled[stop] == ["flapping_stopped", "resolve"]
    assert all(k == [] for k in settled[:stop]) and s.state.incident_id is None
    assert s.state.flapping is False


def test_a_flapping_check_without_an_incident_opens_one_marked_flapping_without_healing() -> None:
    s = Script(flapping_policy(open_after=3600.0))  # never fails long enough to open by open_after
    kinds = [s.feed(i % 2 == 1, float(i)) for i in range(12)]
    assert kinds[:9] == [[]] * 9
    assert kinds[9] == ["open"] and s.state.flapping is True and s.state.incident_id == "inc_1"
    assert kinds[10:] == [[], []]
    assert s.messages == ["flapping: 50.2% of the last 20 results changed state (weighted; high 50%, low 25%)"]


def test_when_flapping_stops_on_a_failing_result_the_incident_stays_open_and_heals_resume() -> None:
    s = Script(flapping_policy())
    for i in range(12):
        s.feed(i % 2 == 1, float(i))
    assert s.state.flapping
    settled = [s.feed(False, 12.0 + i) for i in range(20)]
    stop = next(i for i, k in enumerate(settled) if k)
    assert settled[stop] == ["flapping_stopped", "heal"]
    assert s.state.incident_id == "inc_1"


def test_without_flapping_rules_an_alternating_check_storms_as_before() -> None:
    s = Script(flapping_policy(flapping=None, resolve_after=1, heal=None))
    kinds = [s.feed(i % 2 == 1, float(i)) for i in range(20)]
    assert kinds == [["open"], ["resolve"]] * 10


def test_flapping_is_kept_with_the_incident_state() -> None:
    state = CheckState(incident_id="inc_1", flapping=True)
    assert CheckState.from_json(state.to_json()).flapping is True
    assert CheckState.from_json({"passing_streak": 1}).flapping is False  # incidents stored before it
    assert state.after_incident().flapping is True


# --- baselines ------------------------------------------------------------------------------------


def test_the_median_is_within_one_percent_and_none_before_min_samples() -> None:
    window = LatencyWindow(3600, min_samples=30)
    latencies = [0.010 + 0.0007 * ((i * 37) % 101) for i in range(29)]
    for i, latency in enumerate(latencies):
        window.add(1000.0 + i, latency)
    assert window.median() is None  # 29 results
    window.add(1029.0, 0.5)
    latencies.append(0.5)
    found = window.median()
    assert found is not None
    assert found == pytest.approx(statistics.median(latencies), rel=0.01)


def test_the_window_forgets_minutes_that_leave_it() -> None:
    window = LatencyWindow(120, min_samples=1)  # two minutes
    window.add(0.0, 1.0)
    window.add(60.0, 0.1)
    window.add(61.0, 0.1)
    assert window.median() == pytest.approx(0.1, rel=0.01)
    window.add(125.0, 0.2)  # minute 2: minute 0 leaves
    assert window.count == 3
    window.expire(1000)
    assert window.count == 0 and window.median() is None


def test_a_window_of_an_hour_at_one_result_a_second_holds_sixty_minutes_not_3600_samples() -> None:
    window = LatencyWindow(3600, min_samples=30)
    for i in range(7200):
        window.add(float(i), 0.020 if i % 2 else 0.040)
    assert window.count == 3600
    assert len(window.minutes()) == 60
    assert window.median() == pytest.approx(0.030, rel=0.01)


def test_baselines_go_by_check_skip_unknown_ones_and_round_trip_through_their_rows() -> None:
    now = {"t": 10_000.0}
    baselines = Baselines(lambda: now["t"])
    baselines.configure("api", 3600, 3)
    for i in range(5):
        baselines.record("api", 9_850.0 + i * 30, 0.1 * (i + 1))
    baselines.record("unknown", 9_990.0, 1.0)
    assert baselines.median("api") == pytest.approx(0.3, rel=0.01)
    assert baselines.median("unknown") is None
    rows = baselines.pending()
    assert [(c, m) for c, m, _ in rows] == [("api", 164), ("api", 165)]  # the minutes that are over
    assert baselines.pending() == []  # written once
    rows += baselines.pending(everything=True)  # at stop: the current one too
    assert [(c, m) for c, m, _ in rows] == [("api", 164), ("api", 165), ("api", 166)]
    again = Baselines(lambda: now["t"])
    again.configure("api", 3600, 3)
    again.restore(rows)
    assert again.median("api") == baselines.median("api")
    now["t"] += 3600 + 120
    assert again.median("api") is None  # an hour later, nothing of it is left


def test_a_reload_that_shortens_the_window_keeps_what_still_fits() -> None:
    now = {"t": 600.0}
    baselines = Baselines(lambda: now["t"])
    baselines.configure("api", 3600, 1)
    baselines.record("api", 10.0, 1.0)
    baselines.record("api", 590.0, 0.1)
    baselines.configure("api", 120, 1)
    assert baselines.median("api") == pytest.approx(0.1, rel=0.01)


def test_a_failed_write_is_pending_again() -> None:
    baselines = Baselines(lambda: 100.0)
    baselines.configure("api", 3600, 1)
    baselines.record("api", 90.0, 0.1)
    assert baselines.pending() == []  # minute 1 is not over yet
    rows = baselines.pending(everything=True)
    baselines.retry(rows)
    assert baselines.pending(everything=True) == rows
    assert json.loads(rows[0][2]) == {"-116": 1}  # 0.1 s is bin -116 of 2 % bins


# --- the config keys ---------------------------------------------------------------------------------


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


def load_errors(tmp_path: Path, text: str) -> list[str]:
    from agent.config import ConfigError, load_config

    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text), environ={})
    return list(caught.value.errors)


CHECK = """
checks:
  - name: api
    type: tcp
    host: 127.0.0.1
    port: 9
"""


def test_the_keys_load_inherit_and_turn_into_the_policy(tmp_path: Path) -> None:
    from agent.config import load_config

    config = load_config(write(tmp_path, """
defaults:
  open_when: "error_rate>=5% over 10m"
  flapping: {window: 10, high: "60%", low: 30}
  baseline: {window: 2h, min_samples: 10}
checks:
  - name: api
    type: tcp
    host: 127.0.0.1
    port: 9
  - name: db
    type: tcp
    host: 127.0.0.1
    port: 9
    open_after: 0s
    flapping: false
"""), environ={})
    api, db = config.checks
    assert api.open_when == "error_rate >= 5% over 10m"
    assert api.open_rule == RateRule(5.0, 600.0, inclusive=True)
    assert api.flap_rule == FlapRule(10, 60.0, 30.0)
    assert (api.baseline.window, api.baseline.min_samples) == (7200.0, 10)
    policy = Policy.for_check(api)
    assert (policy.open_when, policy.flapping) == (api.open_rule, api.flap_rule)
    assert db.open_rule == api.open_rule  # open_when replaces open_after, inherited or not
    assert db.flap_rule is None and Policy.for_check(db).flapping is None


def test_flapping_is_on_by_default_and_a_baseline_only_where_asked_for(tmp_path: Path) -> None:
    from agent.config import load_config

    [check] = load_config(write(tmp_path, CHECK), environ={}).checks
    assert check.open_rule is None and check.flap_rule == FlapRule(20, 50.0, 25.0)
    assert check.baseline is None and check.baseline_rule is None  # ~200 KB a check: not kept unasked
    (tmp_path / "b").mkdir()
    text = "checks:\n  - {name: api, type: http, url: 'http://127.0.0.1:9/', conditions: ['latency < 3x baseline']}\n"
    [asks] = load_config(write(tmp_path / "b", text), environ={}).checks
    assert asks.baseline is None and (asks.baseline_rule.window, asks.baseline_rule.min_samples) == (3600.0, 30)


@pytest.mark.parametrize(
    ("extra", "error"),
    [
        ('    open_when: "error_rate > 10 over 5m"\n',
         "checks[0].open_when: invalid rule 'error_rate > 10 over 5m': expected 'error_rate > N% over DURATION'"
         " (or >=), e.g. 'error_rate > 10% over 5m'"),
        ("    flapping: {high: 20, low: 30}\n",
         "checks[0].flapping.low: must be below high (20), or the check could never stop flapping"),
        ("    flapping: {high: 120}\n", "checks[0].flapping.high: must be a percentage between 0 and 100, got 120"),
        ("    flapping: {window: 1}\n", "checks[0].flapping.window: must be 2 or more (state changes weighed), got 1"),
        ("    flapping: {windw: 5}\n", "checks[0].flapping.windw: unknown key (did you mean 'window'?)"),
        ("    baseline: {window: 30s}\n",
         "checks[0].baseline.window: must be at least 1m (the baseline is kept per minute), got 30s"),
        ("    baseline: {min_samples: 0}\n", "checks[0].baseline.min_samples: must be 1 or more, got 0"),
    ],
)
def test_mistakes_are_located_errors(tmp_path: Path, extra: str, error: str) -> None:
    assert load_errors(tmp_path, CHECK + extra) == [error]


def test_a_mistake_in_defaults_is_located_there(tmp_path: Path) -> None:
    assert load_errors(tmp_path, 'defaults:\n  open_when: "error_rate > 10% over 5"\n' + CHECK) == [
        "defaults.open_when: invalid rule 'error_rate > 10% over 5': '5' is not a duration such as 30s, 5m or 1h"
    ]


def test_a_reload_that_turns_flapping_off_ends_it_on_the_next_result() -> None:
    s = Script(flapping_policy())
    for i in range(11):
        s.feed(i % 2 == 1, float(i))
    assert s.state.flapping
    s.policy = flapping_policy(flapping=None)
    assert s.feed(True, 12.0) == ["flapping_stopped"]  # one passing result of the two resolve_after asks
    assert s.messages[-1] == "stopped flapping: flapping is no longer watched"
    assert s.feed(True, 13.0) == ["resolve"]


def test_retuned_windows_keep_the_results_they_hold() -> None:
    rates = CheckRates(parse_rate_rule("error_rate > 10% over 1m"), FlapRule(window=4))
    rates.seed([(0.0, False), (10.0, True), (20.0, False), (30.0, True)])
    again = rates.retuned(parse_rate_rule("error_rate > 10% over 15s"), FlapRule(window=2))
    observed = again.observe(40.0, False)
    assert observed.error_share == pytest.approx(100 * 1 / 2)  # 30 and 40 are within 15 s
    assert observed.flap_share == pytest.approx(100.0)  # T, F, T, F: both of the last 2 changed
    assert CheckRates(None, None).observe(1.0, False) == Rates()
    assert rates.seed_span == (60.0, 5) and CheckRates(None, None).seed_span == (0.0, 0)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 30), st.floats(1e-4, 5.0)), min_size=1, max_size=300))
def test_the_stepping_median_is_the_walking_one_whatever_comes_and_goes(steps: list[tuple[int, float]]) -> None:
    window = LatencyWindow(180, min_samples=1)  # three minutes: minutes come and go
    at = 0.0
    for gap, latency in steps:
        at += gap
        window.add(at, latency)
        assert window.median() == window.median_by_walking()
    window.expire(int(at // 60) + 2)  # two of the three minutes left
    assert window.median() == window.median_by_walking()


@settings(max_examples=200, deadline=None)
@given(st.integers(2, 30), st.lists(st.booleans(), max_size=200))
def test_the_running_flap_share_is_the_one_computed_afresh(window: int, results: list[bool]) -> None:
    history = FlapHistory(window)
    for i, ok in enumerate(results):
        assert history.add(ok) == pytest.approx(change_share(results[: i + 1], window), abs=1e-9)


@pytest.mark.parametrize(
    ("extra", "error"),
    [
        ('    flapping: "yes"\n', "checks[0].flapping: expected a mapping such as {window: 20, high: 50, low: 25}, or false"),
        ('    flapping: {low: "abc"}\n', "checks[0].flapping.low: expected a percentage such as 50 or '50%'"),
        ("    flapping: {high: true}\n", "checks[0].flapping.high: expected a percentage such as 50 or '50%', not true/false"),
        ("    open_when: 5\n", "checks[0].open_when: expected a string"),
    ],
)
def test_the_wrong_kind_of_value_says_what_is_expected(tmp_path: Path, extra: str, error: str) -> None:
    assert load_errors(tmp_path, CHECK + extra) == [error]
