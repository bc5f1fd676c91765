"""Properties of the pure parts, under inputs nobody wrote by hand (hypothesis).

The incident state machine is driven the way the engine drives it: each result goes through
``evaluate``; the transition is adopted (and its heal recorded in the shared budget) only when the
write "succeeds" — a write may fail, as on a full disk, and then nothing is adopted; the agent may
be killed and restored from what was last written. Whatever the sequence: at most one open
incident per check, never more heal attempts than ``max_restarts`` within any window, and every
incident resolves once results stay ok long enough.

The payload builders get generated events, incidents, timelines and evidence (built through the
real section builders): every document is valid ``lifeguard.incident/v1``, and the webhook body
and the file line carry the same document.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from actions.notifiers.file import render_line
from actions.notifiers.webhook import render_json
from agent import payload
from agent.events import EVENT_KINDS, Event, Notification
from agent.evidence import checks_section, container_section, response_section
from agent.incidents import SEVERITIES, CheckState, HealBudget, HealPolicy, Policy, evaluate, heal_call_failed
from checks.base import CheckResult

SCHEMA = Path(__file__).resolve().parent.parent / "agent" / "schemas" / "incident-v1.schema.json"
VALIDATOR = Draft202012Validator(json.loads(SCHEMA.read_text()), format_checker=Draft202012Validator.FORMAT_CHECKER)

PROPERTY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# -- the incident state machine --------------------------------------------------------------------
@dataclass
class Step:
    check: int  # which check the result is for
    ok: bool
    gap: float  # seconds since the previous result started (negative: the wall clock stepped back)
    latency: float  # the engine's clock reads `now` this long after the result started
    write_fails: bool  # the transaction is refused (a full disk, a lock held elsewhere)
    heal_call_fails: bool  # the Docker call of a heal made at this step fails
    agent_killed: bool  # SIGKILL after this step: the next result meets a restored engine


steps = st.builds(
    Step,
    check=st.integers(0, 2),
    ok=st.booleans(),
    gap=st.one_of(st.floats(0.0, 40.0), st.floats(-5.0, 0.0)),
    latency=st.floats(0.0, 3.0),
    write_fails=st.integers(0, 5).map(lambda n: n == 0),
    heal_call_fails=st.integers(0, 3).map(lambda n: n == 0),
    agent_killed=st.integers(0, 19).map(lambda n: n == 0),
)


@dataclass
class Tracked:
    policy: Policy
    state: CheckState = field(default_factory=CheckState)
    stored: CheckState | None = None  # what the incident row holds (restored after a kill)


class EngineModel:
    """The engine's use of the machine, without I/O: adopt only what was written."""

    def __init__(self, policies: list[Policy]) -> None:
        self.checks = [Tracked(p) for p in policies]
        self.budget = HealBudget()
        self.heals: dict[tuple[str, str], list[float]] = {}  # every attempt written: the "heals" table
        self.opened: dict[int, list[str]] = {i: [] for i in range(len(policies))}
        self.resolved: dict[int, list[str]] = {i: [] for i in range(len(policies))}
        self.exhausted_since_heal: dict[str, int] = {}
        self.n = 0

    def _new_id(self) -> str:
        self.n += 1
        return f"inc_{self.n}"

    def feed(self, i: int, ok: bool, started_at: float, now: float, *, write_fails: bool = False,
             heal_call_fails: bool = False) -> list[str]:
        tracked = self.checks[i]
        t = evaluate(tracked.state, ok, started_at, tracked.policy, self.budget, now, "m", new_incident_id=self._new_id)
        if not t.decisions:
            tracked.state = t.state
            return []
        if write_fails:
            return []  # nothing adopted: the next result decides again
        kinds = t.kinds()
        if "open" in kinds:
            assert tracked.state.incident_id is None, "a second incident opened while one is open"
            assert all(t.incident_id not in ids for ids in self.opened.values()), "an incident id reused"
            self.opened[i].append(t.incident_id or "")
        if "resolve" in kinds:
            assert t.incident_id == tracked.state.incident_id
            self.resolved[i].append(t.incident_id or "")
        if "heal_exhausted" in kinds:
            key = t.incident_id or ""
            self.exhausted_since_heal[key] = self.exhausted_since_heal.get(key, 0) + 1
            assert self.exhausted_since_heal[key] == 1, "heal_exhausted recorded twice without a heal between"
        if "heal" in kinds:
            self.exhausted_since_heal[t.incident_id or ""] = 0
        tracked.state = t.state
        tracked.stored = t.stored_state if tracked.state.incident_id else None
        if t.heal is not None:
            self.budget.record(t.heal, now)
            self.heals.setdefault(t.heal, []).append(now)
            if heal_call_fails:
                # The engine's heal task: the Docker call failed, written as heal_failed.
                tracked.state = heal_call_failed(tracked.state)
                tracked.stored = tracked.state
        return kinds

    def restart(self) -> None:
        """SIGKILL and start again: open incidents from their rows, the budget from the heals table."""
        self.budget = HealBudget((key, at) for key, times in self.heals.items() for at in times)
        for tracked in self.checks:
            if tracked.stored is not None and tracked.state.incident_id is not None:
                restored = CheckState.from_json(json.loads(json.dumps(tracked.stored.to_json())))
                tracked.state = replace(restored, incident_id=tracked.state.incident_id)
            else:
                tracked.state = CheckState()

    def open_incidents(self, i: int) -> list[str]:
        return [inc for inc in self.opened[i] if inc not in self.resolved[i]]


def heal_policy(target: str, max_restarts: int, within: float, cooldown: float) -> HealPolicy:
    return HealPolicy(target=target, max_restarts=max_restarts, within=within, cooldown=cooldown)


policies = st.builds(
    lambda open_after, resolve_after, heal: Policy(open_after=open_after, resolve_after=resolve_after, heal=heal),
    open_after=st.sampled_from([0.0, 5.0, 30.0]),
    resolve_after=st.integers(1, 3),
    heal=st.none(),
)


@st.composite
def machines(draw: st.DrawFn) -> tuple[list[Policy], list[Step]]:
    # Two targets: "shared" is healed by checks 0 and 1 (one budget for both), "own" by check 2.
    shared = heal_policy("shared", draw(st.integers(1, 3)), draw(st.sampled_from([30.0, 120.0])),
                         draw(st.sampled_from([0.0, 5.0, 20.0])))
    own = heal_policy("own", draw(st.integers(1, 3)), draw(st.sampled_from([30.0, 120.0])),
                      draw(st.sampled_from([0.0, 5.0, 20.0])))
    chosen = []
    for i in range(3):
        base = draw(policies)
        heal = draw(st.sampled_from([None, shared if i < 2 else own]))
        chosen.append(replace(base, heal=heal))
    return chosen, draw(st.lists(steps, min_size=1, max_size=120))


def assert_budget_never_exceeded(model: EngineModel) -> None:
    limits = {p.heal.key: p.heal for t in model.checks if (p := t.policy).heal is not None}
    for key, times in model.heals.items():
        heal = limits[key]
        ordered = sorted(times)
        for end in ordered:
            in_window = [at for at in ordered if end - heal.within < at <= end]
            assert len(in_window) <= heal.max_restarts, (key, end, in_window)


@PROPERTY
@given(machines())
def test_state_machine_one_incident_budget_kept_and_everything_resolves(case: tuple[list[Policy], list[Step]]) -> None:
    chosen, script = case
    model = EngineModel(chosen)
    clock = 1_700_000_000.0
    for step in script:
        clock += step.gap
        model.feed(step.check, step.ok, clock, clock + step.latency,
                   write_fails=step.write_fails, heal_call_fails=step.heal_call_fails)
        for i in range(3):
            assert len(model.open_incidents(i)) <= 1
            assert model.checks[i].state.incident_id == (model.open_incidents(i) or [None])[0]
        if step.agent_killed:
            model.restart()
    assert_budget_never_exceeded(model)

    # From now on every result passes and every write succeeds: resolve_after results resolve it.
    for i, tracked in enumerate(model.checks):
        for _ in range(tracked.policy.resolve_after):
            clock += 1.0
            model.feed(i, True, clock, clock + 0.01)
        assert tracked.state.incident_id is None, f"check {i} still has an incident after passing"
        assert model.open_incidents(i) == []
        assert sorted(model.opened[i]) == sorted(model.resolved[i])
        assert len(set(model.resolved[i])) == len(model.resolved[i]), "an incident resolved twice"


@PROPERTY
@given(
    max_restarts=st.integers(1, 4),
    within=st.floats(1.0, 100.0),
    cooldown=st.floats(0.0, 10.0),
    gaps=st.lists(st.floats(0.0, 15.0), min_size=1, max_size=200),
)
def test_a_check_that_never_recovers_never_heals_past_its_budget(
    max_restarts: int, within: float, cooldown: float, gaps: list[float]
) -> None:
    model = EngineModel([Policy(open_after=0.0, resolve_after=1, heal=heal_policy("c", max_restarts, within, cooldown))])
    clock = 1_700_000_000.0
    for gap in gaps:
        clock += gap
        model.feed(0, False, clock, clock)
    assert len(model.opened[0]) == 1
    assert_budget_never_exceeded(model)


# -- payload builders ------------------------------------------------------------------------------
EPOCH = st.floats(946_684_800.0, 4_102_444_799.0)  # 2000 … 2099
texts = st.text(max_size=40)
names = st.from_regex(r"[A-Za-z0-9_.-]{1,20}", fullmatch=True)
json_scalars = st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.floats(allow_nan=False, allow_infinity=False) | texts
docker_times = st.one_of(
    st.none(), st.just("0001-01-01T00:00:00Z"), texts,
    st.datetimes().map(lambda d: d.isoformat() + "Z"),
)


@st.composite
def check_results(draw: st.DrawFn) -> CheckResult:
    return CheckResult(draw(names), draw(st.booleans()), draw(EPOCH), draw(st.floats(0.0, 60.0)), draw(texts))


@st.composite
def failing_results(draw: st.DrawFn) -> CheckResult:
    response = {
        "url": draw(st.sampled_from(["http://bob:pw@127.0.0.1:9/x?token=t", "https://127.0.0.1/health"]) | texts),
        "status": draw(st.none() | st.integers(100, 599)),
        "headers": draw(st.dictionaries(st.from_regex(r"[A-Za-z-]{1,20}", fullmatch=True), texts, max_size=5)),
        "body": draw(st.none() | st.text(max_size=200) | st.just('{"password": "x", "ok": 1}')),
        "body_truncated": draw(st.booleans()),
    }
    details = draw(st.sampled_from([{}, {"response": response}, {"response": "not a dict"}]))
    return CheckResult(draw(names), False, draw(EPOCH), draw(st.floats(0.0, 60.0)), draw(texts), details)


@st.composite
def inspect_attrs(draw: st.DrawFn) -> dict[str, Any]:
    health = draw(st.none() | st.fixed_dictionaries({
        "Status": st.sampled_from(["starting", "healthy", "unhealthy"]),
        "FailingStreak": st.integers(0, 100),
        "Log": st.lists(st.fixed_dictionaries({
            "Start": docker_times, "End": docker_times, "ExitCode": st.integers(-1, 255), "Output": texts,
        }), max_size=5),
    }))
    state = {"Status": draw(st.sampled_from(["running", "exited", "restarting", "paused", "created"])),
             "Running": draw(st.booleans()), "ExitCode": draw(st.integers(0, 255)), "OOMKilled": draw(st.booleans()),
             "StartedAt": draw(docker_times), "FinishedAt": draw(docker_times)}
    if health is not None:
        state["Health"] = health
    return draw(st.fixed_dictionaries({
        "Name": st.just("/" + draw(names)), "Id": st.from_regex(r"[0-9a-f]{64}", fullmatch=True),
        "Config": st.fixed_dictionaries({"Image": st.none() | names, "Env": st.just(["DB_PASSWORD=hunter2"])}),
        "State": st.just(state), "RestartCount": st.integers(0, 1000),
    }))


@st.composite
def bundles(draw: st.DrawFn) -> dict[str, Any] | None:
    if draw(st.booleans()):
        return None
    section_error = st.fixed_dictionaries({"error": texts})
    failing = draw(st.none() | failing_results())
    container = draw(st.one_of(
        st.none(), section_error,
        st.builds(container_section, inspect_attrs(), st.lists(st.text(max_size=300), max_size=5),
                  st.lists(st.text(min_size=4, max_size=10), max_size=2)),
    ))
    host = draw(st.one_of(st.none(), section_error, st.fixed_dictionaries({
        "hostname": names, "cpu_percent": st.none() | st.floats(0, 100),
        "load_avg": st.none() | st.lists(st.floats(0, 64), min_size=3, max_size=3),
        "memory": st.none() | st.dictionaries(names, st.integers(0, 2**40), max_size=3),
        "disk": st.none() | st.lists(st.dictionaries(names, json_scalars, max_size=3), max_size=3),
        "top_processes": st.none() | st.lists(st.dictionaries(names, json_scalars, max_size=3), max_size=5),
    })))
    return {
        "phase": draw(st.sampled_from(["opened", "resolved"])),
        "collected_at": payload.iso(draw(EPOCH)),
        "checks": checks_section(draw(st.lists(check_results(), max_size=25))),
        "response": draw(st.just(response_section(failing)) | section_error),
        "container": container,
        "host": host,
        **draw(st.dictionaries(st.from_regex(r"x_[a-z]{1,8}", fullmatch=True), json_scalars, max_size=2)),
    }


@st.composite
def notifications(draw: st.DrawFn) -> Notification:
    kind = draw(st.sampled_from(EVENT_KINDS))
    resolved = kind == "incident.resolved" or draw(st.booleans()) and kind != "incident.opened"
    opened_at = draw(EPOCH)
    has_heal = draw(st.booleans())
    row = {
        "id": "inc_" + draw(st.from_regex(r"[0-9a-z]{24}", fullmatch=True)),
        "check_name": draw(names),
        "check_type": draw(st.sampled_from(["http", "tcp", "container", "dns"])),
        "status": "resolved" if resolved else "open",
        "severity": draw(st.sampled_from(SEVERITIES)),
        "title": draw(texts),
        "opened_at": opened_at,
        "resolved_at": opened_at + draw(st.floats(0, 86_400)) if resolved else None,
        "resolve_reason": draw(st.sampled_from(["recovered", "check_removed"])) if resolved else None,
        "target": draw(texts),
        "container": draw(st.none() | names),
        "max_restarts": draw(st.integers(1, 10)) if has_heal else None,
        "state": json.dumps({
            "restarts": draw(st.integers(0, 10)),
            "last_heal": draw(st.sampled_from([None, "attempted", "succeeded", "failed", "exhausted", "dry_run"])),
        }),
    }
    timeline = draw(st.lists(st.fixed_dictionaries({
        "at": EPOCH,
        "kind": st.sampled_from(["opened", "heal_attempted", "heal_succeeded", "heal_failed", "heal_exhausted",
                                 "notified", "resolved"]),
        "message": texts,
    }), max_size=12))
    event = Event(
        id="evt_" + draw(st.from_regex(r"[0-9a-z]{24}", fullmatch=True)),
        kind=kind,
        incident_id=row["id"],
        sequence=draw(st.integers(1, 10_000)),
        occurred_at=draw(EPOCH),
        agent={"name": draw(names), "version": "0.1.0"},
        incident=payload.incident_snapshot(row, timeline),
        reason="heal_exhausted" if kind == "incident.escalated" else None,
    )
    return Notification(event=event, evidence=draw(bundles()), evidence_url=draw(texts))


@PROPERTY
@given(notifications())
def test_every_document_the_builders_make_is_valid_v1(notification: Notification) -> None:
    document = payload.event_document(notification)
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in VALIDATOR.iter_errors(document)]
    assert errors == []
    assert json.loads(render_json(notification)) == document
    line = render_line(notification)
    assert line.endswith(b"\n") and b"\n" not in line[:-1], "a file notifier's event must be one line"
    assert json.loads(line) == document
