"""The incident state machine, driven as a script with an injected time (no I/O, no sleeps)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from agent.incidents import CheckState, HealBudget, HealPolicy, Policy, evaluate, heal_call_failed


class Script:
    """Feeds results at given times and keeps the machine's decisions."""

    def __init__(self, policy: Policy, budget: HealBudget | None = None) -> None:
        self.policy = policy
        self.budget = budget or HealBudget()
        self.state = CheckState()
        self.n = 0

    def feed(self, ok: bool, at: float) -> list[str]:
        t = evaluate(self.state, ok, at, self.policy, self.budget, now=at, message="m",
                     new_incident_id=lambda: f"inc_{self.n + 1}")
        if "open" in t.kinds():
            self.n += 1
        self.state = t.state
        if t.heal is not None:
            self.budget.record(t.heal, at)
        return t.kinds()


def test_opens_on_first_failing_result_at_least_open_after_past_the_streak_start() -> None:
    s = Script(Policy(open_after=30, resolve_after=2))
    assert s.feed(False, 0) == []
    assert s.feed(False, 10) == []
    assert s.feed(False, 29.9) == []
    assert s.feed(False, 30) == ["open"]
    assert s.state.incident_id == "inc_1"


def test_open_after_zero_opens_on_the_first_failure() -> None:
    s = Script(Policy(open_after=0, resolve_after=1))
    assert s.feed(False, 5) == ["open"]


def test_a_passing_result_restarts_the_failing_streak() -> None:
    s = Script(Policy(open_after=30, resolve_after=2))
    s.feed(False, 0)
    s.feed(False, 20)
    assert s.feed(True, 25) == []
    assert s.feed(False, 35) == []
    assert s.feed(False, 64) == []
    assert s.feed(False, 65) == ["open"]


def test_resolves_after_resolve_after_passing_results_in_a_row() -> None:
    s = Script(Policy(open_after=0, resolve_after=2))
    s.feed(False, 0)
    assert s.feed(True, 10) == []
    assert s.feed(False, 20) == []  # streak broken, same incident, no second open
    assert s.feed(True, 30) == []
    assert s.feed(True, 40) == ["resolve"]
    assert s.state.incident_id is None


def test_at_most_one_open_incident_per_check() -> None:
    s = Script(Policy(open_after=0, resolve_after=2))
    kinds = [k for t in range(10) for k in s.feed(False, t)]
    assert kinds == ["open"]


def test_a_new_failure_after_resolve_opens_a_new_incident() -> None:
    s = Script(Policy(open_after=0, resolve_after=1))
    s.feed(False, 0)
    s.feed(True, 1)
    assert s.feed(False, 2) == ["open"]
    assert s.state.incident_id == "inc_2"


API = ("restart_container", "api")
HEAL = HealPolicy(target="api", max_restarts=3, within=900, cooldown=30)


def test_heal_restarts_when_the_incident_opens() -> None:
    s = Script(Policy(open_after=0, resolve_after=2, heal=HEAL))
    assert s.feed(False, 0) == ["open", "heal"]
    assert s.budget.used(API, 0, 900) == 1
    assert s.state.restarts == 1 and s.state.last_heal == "attempted"


def test_failing_results_during_cooldown_never_restart() -> None:
    s = Script(Policy(open_after=0, resolve_after=2, heal=HEAL))
    s.feed(False, 0)
    assert [s.feed(False, t) for t in (5, 10, 29)] == [[], [], []]
    assert s.budget.used(API, 29, 900) == 1


def test_still_failing_after_cooldown_is_heal_failed_then_restart_again() -> None:
    s = Script(Policy(open_after=0, resolve_after=2, heal=HEAL))
    s.feed(False, 0)
    assert s.feed(False, 30) == ["heal_failed", "heal"]
    assert s.state.restarts == 2


def test_passing_after_restart_is_heal_succeeded_and_counts_toward_resolve() -> None:
    s = Script(Policy(open_after=0, resolve_after=2, heal=HEAL))
    s.feed(False, 0)
    assert s.feed(True, 5) == ["heal_succeeded"]
    assert s.state.last_heal == "succeeded"
    assert s.feed(True, 10) == ["resolve"]


def test_budget_spent_when_opening_escalates_at_once_and_never_restarts() -> None:
    budget = HealBudget([(API, 100), (API, 200), (API, 300)])
    s = Script(Policy(open_after=0, resolve_after=1, heal=HEAL), budget)
    assert s.feed(False, 400) == ["open", "heal_exhausted"]
    assert s.feed(False, 500) == []  # recorded once, no restart, no second escalation
    assert budget.used(API, 500, 900) == 3


def test_budget_spent_during_an_incident_escalates_once() -> None:
    heal = HealPolicy(target="api", max_restarts=2, within=900, cooldown=10)
    s = Script(Policy(open_after=0, resolve_after=1, heal=heal))
    assert s.feed(False, 0) == ["open", "heal"]
    assert s.feed(False, 10) == ["heal_failed", "heal"]
    assert s.feed(False, 20) == ["heal_failed", "heal_exhausted"]
    assert s.feed(False, 30) == []
    assert s.state.last_heal == "exhausted"


def test_heals_resume_when_the_window_frees_up() -> None:
    heal = HealPolicy(target="api", max_restarts=1, within=100, cooldown=10)
    s = Script(Policy(open_after=0, resolve_after=1, heal=heal))
    assert s.feed(False, 0) == ["open", "heal"]
    assert s.feed(False, 10) == ["heal_failed", "heal_exhausted"]
    assert s.budget.frees_at(10, heal) == 100
    assert s.feed(False, 99) == []
    assert s.feed(False, 101) == ["heal"]


def test_budget_is_per_container_and_shared_across_incidents() -> None:
    heal = HealPolicy(target="api", max_restarts=2, within=900, cooldown=1)
    budget = HealBudget()
    s = Script(Policy(open_after=0, resolve_after=1, heal=heal), budget)
    assert s.feed(False, 0) == ["open", "heal"]
    assert s.feed(True, 1) == ["heal_succeeded", "resolve"]
    assert s.feed(False, 2) == ["open", "heal"]
    assert s.feed(True, 3) == ["heal_succeeded", "resolve"]
    assert s.feed(False, 4) == ["open", "heal_exhausted"]
    other = HealPolicy(target="db", max_restarts=2, within=900, cooldown=1)
    assert budget.allows(4, other)


def test_rolling_window_counts_only_attempts_within_it() -> None:
    budget = HealBudget([(API, 0), (API, 50)])
    policy = HealPolicy(target="api", max_restarts=2, within=100, cooldown=0)
    assert not budget.allows(99, policy)
    assert budget.allows(100.5, policy)  # the attempt at 0 left the window
    budget.prune(now=200, longest_window=100)
    assert budget.used(API, 200, 1000) == 0


def test_a_failed_docker_call_is_judged_at_once() -> None:
    s = Script(Policy(open_after=0, resolve_after=2, heal=HEAL))
    s.feed(False, 0)
    s.state = heal_call_failed(s.state)
    assert s.state.last_heal == "failed"
    # no second heal_failed after the cooldown for the same attempt: only the next restart
    assert s.feed(False, 30) == ["heal"]


def test_dry_run_records_once_and_spends_no_budget() -> None:
    heal = HealPolicy(target="api", max_restarts=3, within=900, cooldown=1, dry_run=True)
    s = Script(Policy(open_after=0, resolve_after=1, heal=heal))
    assert s.feed(False, 0) == ["open", "dry_run"]
    assert s.feed(False, 10) == []
    assert s.budget.used(API, 10, 900) == 0


def test_state_round_trips_through_json() -> None:
    state = CheckState(incident_id="inc_1", restarts=2, cooldown_until=12.5, verifying=True)
    assert CheckState.from_json(state.to_json() | {"future_field": 1}) == state


@pytest.mark.parametrize(("severity", "label"), [("critical", "SEV-1"), ("low", "SEV-4")])
def test_sev_labels(severity: str, label: str) -> None:
    from agent.incidents import sev_label

    assert sev_label(severity) == label


def test_evaluate_is_pure_and_assigns_the_incident_id_in_the_next_state() -> None:
    state, budget = CheckState(), HealBudget()
    policy = Policy(open_after=0, resolve_after=1, heal=HEAL)
    t = evaluate(state, False, 10, policy, budget, now=10, message="HTTP 500", new_incident_id=lambda: "inc_abc")
    assert state == CheckState() and budget.used(API, 10, 900) == 0  # nothing changed in place
    assert t.incident_id == t.state.incident_id == "inc_abc"
    assert t.kinds() == ["open", "heal"] and t.heal == API
    assert t.decisions[1].message == "restarting container 'api'"


def test_resolve_hands_back_the_incident_id_and_a_state_without_it() -> None:
    state = CheckState(incident_id="inc_1", restarts=2, last_heal="failed")
    t = evaluate(state, True, 5, Policy(open_after=0, resolve_after=1), HealBudget(), now=5)
    assert t.kinds() == ["resolve"] and t.incident_id == "inc_1"
    assert t.state.incident_id is None and t.state.restarts == 0 and t.state.passing_streak == 1


def test_the_heal_kind_words_its_own_timeline() -> None:
    heal = HealPolicy(target="web.service", max_restarts=1, within=60, cooldown=5, kind="restart_unit",
                      verb="restart", verb_ing="restarting", noun="unit")
    s = Script(Policy(open_after=0, resolve_after=1, heal=heal))
    t = evaluate(s.state, False, 0, s.policy, s.budget, now=0, message="m")
    assert t.decisions[-1].message == "restarting unit 'web.service'" and t.heal == ("restart_unit", "web.service")
    s.budget.record(("restart_unit", "web.service"), 0)
    t2 = evaluate(replace(t.state, cooldown_until=None, verifying=False), False, 1, s.policy, s.budget, now=1)
    assert t2.decisions[-1].message == "restart budget spent for unit 'web.service': 1 of 1 attempts used within 1m"
    assert s.budget.used(API, 1, 60) == 0  # another kind's budget is untouched
