"""dsrconform's pytest plugin (entry point ``pytest11: dsrconform``): options, marker, seed.

What it adds to every pytest run in an environment where dsrconform is installed:

- the option group ``dsrconform`` (names in the ``OPT_*`` constants, registered by
  :mod:`dsrconform.pytest_options`): which lab file, lab backend, target, rewrite mode, address
  family, requirement level, random seed, results directory, and whether to keep the lab up
  after the run;
- the marker ``@pytest.mark.requirement("RW-1", ...)`` tying a test to requirement IDs of
  :mod:`dsrconform.spec`; an unknown ID stops collection with a usage error naming the test;
- ``--dsr-level``: tests whose requirements are all below that level are deselected;
  ``--dsr-requirement ID,...``: tests citing none of those IDs are deselected;
- one seed per run, random unless ``--dsr-seed`` is given, shown in the report header so any run
  can be replayed, and available to tests as the ``dsr_seed`` fixture;
- verdicts: ``dsr_check`` attaches them to the test's report; a FAIL is a test failure, an
  UNKNOWN (:class:`RequirementUnknown`) is reported as an *error* (``N error``, ``-rE``), never
  a pass nor a failure; at the end a ``dsrconform: requirements`` section of the terminal
  summary gives one line per requirement, and with ``--dsr-results DIR`` the run leaves
  ``DIR/results.json`` (written once, by the controller: :mod:`dsrconform.pytest_results`);
- ``--dsr-family ipv4,ipv6`` (default ipv4; :mod:`dsrconform.pytest_platforms`): every lab
  test runs once per address family as it does per mode, the family part of its platform and
  of its id when the run asks for more than ipv4; the ``dsr_family`` fixture names it, and
  ``dsr_scenario`` drives that family's services only (:mod:`dsrconform.families`); without
  ``--dsr-lab`` each family brings up its own lab (ipv4 labs/basic.yaml, ipv6 labs/dual.yaml),
  and a lab file with no service of a family asked for stops the run at collection;
- NOT APPLICABLE (:mod:`dsrconform.applicability`): at collection, a lab test whose platform's
  mode or address family (or a family of its lab's services) the target's capabilities lack,
  or whose every requirement concerns only modes the target lacks, is marked; it is skipped in
  setup before its fixtures (no lab comes up for it), counted as ``not applicable`` and
  recorded with its reasons, never a failure;
- progress while a lab comes up or a scenario runs (:class:`Progress`): a line per phase with
  the seconds elapsed, and on a terminal one every few seconds in between;
- the marker ``@pytest.mark.dsr_every_mode``: without ``--dsr-mode``, lab tests run in the lab
  file's rewrite mode, and tests so marked (the steady suite: RW, DP, AF, what a mode changes)
  also in every other mode the target supports and the lab file can run
  (:func:`dsrconform.pytest_platforms.platforms_of`);
- the marker ``@pytest.mark.dsr_scenario_for("SF-3")``: the test judges its requirement inside
  a scenario that exists for another, less strict one (SC-3 in the flood-scale scenario, built
  for SF-3); it is deselected when that requirement is below ``--dsr-level``, so a MUST run
  judges SC-3 where it is a MUST (the scale scenario) and does not pay for SF-3's flood;
- ``--dsr-profile`` (:mod:`dsrconform.profiles`; full by default): a profile with runs of its
  own (quick) names the main platform's mode and the extra ones, generates every lab test on
  all of them and keeps a test only where one of its runs stands in for the test's scenario
  (the marker ``@pytest.mark.dsr_scenario("name")``, else the test's ``scenario`` parameter)
  and judges its requirement; ``dsr_scenario`` runs the profile's variant; the header prints
  the profile's coverage table.

The module imports nothing heavy (the catalogue's levels and what ``dsrconform run`` shares with
it, light modules): lab, target and checker modules load inside hooks, only when used.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable, Generator, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

# Options and platforms live in their own modules; pytest finds hooks and fixtures on the
# registered plugin module, so those defined there are imported (re-exported) here.
from dsrconform.pytest_options import (  # noqa: F401 (re-exported: hooks, constants)
    EVERY_MODE_MARKER,
    GROUP,
    MARKER,
    OPT_BACKEND,
    OPT_FAMILY,
    OPT_KEEP_LAB,
    OPT_LAB,
    OPT_LEVEL,
    OPT_MODE,
    OPT_MUTANT,
    OPT_NO_EVIDENCE,
    OPT_PROFILE,
    OPT_REQUIREMENT,
    OPT_RESULTS,
    OPT_SEED,
    OPT_SERVER_COMMAND,
    OPT_TARGET,
    OPT_TARGET_OPT,
    SCENARIO_FOR_MARKER,
    SCENARIO_MARKER,
    _dest,
    lab_path,
    pytest_addoption,
    requirement_ids,
    results_dir,
    target_options,
    wanted_ids,
)
from dsrconform.pytest_platforms import (  # noqa: F401 (re-exported: hooks, fixtures)
    NOT_APPLICABLE_KEY,
    USED_PLATFORMS_KEY,
    Platform,
    families,
    item_platform,
    item_platform_id,
    item_platform_or_run,
    mark_not_applicable,
    names_family,
    platform_id,
    platforms,
    platforms_of,
    profile_of,
    pytest_collection_finish,
    pytest_generate_tests,
    scenario_platform,
    several_platforms,
)
from dsrconform.pytest_progress import Progress
from dsrconform.pytest_results import (  # noqa: F401 (re-exported: hooks, stash keys)
    RESULTS_KEY,
    RUN_KEY,
    SEED_KEY,
    pytest_sessionfinish,
    pytest_sessionstart,
    pytest_terminal_summary,
    run_info,
)
from dsrconform.report.collect import (
    PROP_ATTACHMENTS,
    PROP_FAMILY,
    PROP_NOT_APPLICABLE,
    PROP_PLATFORM,
    PROP_REQUIREMENTS,
    PROP_SCENARIO,
    PROP_UNKNOWN,
    PROP_VERDICTS,
    RunRecorder,
    is_not_applicable,
    is_unknown,
)
from dsrconform.report.model import (
    Attachment,
    at_or_above,
)

if TYPE_CHECKING:
    from dsrconform.lab import Lab
    from dsrconform.lab.protocol import RunningLab

VERDICTS_KEY = pytest.StashKey[list[Any]]()
SCENARIO_DIRS_KEY = pytest.StashKey[list[tuple[Any, str, Path | None]]]()
"""(observations, scenario name, run directory or None) of each scenario run this session."""
ATTACHMENTS_KEY = pytest.StashKey[list[Attachment]]()
"""On a test's item: the evidence files made for it (pcap windows of its FAILs)."""
SCENARIO_RUNS_KEY = pytest.StashKey[list[Any]]()
"""The :class:`~dsrconform.chaos.traffic.SteadyRun` of each scenario run this session (their
captures cut the evidence of FAILs)."""
SCENARIO_KEY = pytest.StashKey[tuple[str, str | None]]()
"""On a test's item: (scenario name, its run directory relative to the results) it judged."""
# The user_properties of the test reports (PROP_*) are dsrconform.report.collect's.


class RequirementUnknown(Exception):
    """A requirement could not be decided (data missing, a checker crashed): never a pass."""


class ScenarioFailed(RequirementUnknown):
    """The scenario a test judges could not run (a fault or a generator failed): its
    requirements are undecided, reported as an error like any UNKNOWN."""


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}(*ids): the dsrconform requirement IDs (e.g. 'RW-1') this test checks",
    )
    config.addinivalue_line(
        "markers",
        f"{EVERY_MODE_MARKER}: without {OPT_MODE}, also run this lab test in every other "
        "rewrite mode the target supports and the lab file can run",
    )
    config.addinivalue_line(
        "markers",
        f"{SCENARIO_FOR_MARKER}(id): the test's scenario exists for requirement id; deselected "
        f"when that requirement is below {OPT_LEVEL}",
    )
    config.addinivalue_line(  # profiles (dsrconform.profiles)
        "markers",
        f"{SCENARIO_MARKER}(name): the suites' scenario this test judges (a profile keeps or "
        "deselects the test by it)",
    )
    seed = config.getoption(_dest(OPT_SEED))
    config.stash[SEED_KEY] = seed if seed is not None else random.SystemRandom().randrange(2**32)
    config.stash[RUN_KEY] = record = RunRecorder()
    config.pluginmanager.register(record, "dsrconform-run-record")
    from dsrconform.report.pytest_hooks import ReportHooks  # JUnit XML and allure results

    config.pluginmanager.register(ReportHooks(config), "dsrconform-report-hooks")
    mutant = config.getoption(_dest(OPT_MUTANT))
    options = target_options(config)
    if mutant is not None or options:  # unknown ones: now, not as an error in every lab setup
        from dsrconform.errors import ConfigError
        from dsrconform.target import check_mutant

        try:
            check_mutant(config.getoption(_dest(OPT_TARGET)), mutant, options=options)
        except ConfigError as e:
            flag = OPT_MUTANT if mutant is not None else OPT_TARGET_OPT
            raise pytest.UsageError(f"{flag}: {e}") from None


def pytest_report_header(config: pytest.Config) -> str | list[str]:
    seed = config.stash[SEED_KEY]
    given = config.getoption(_dest(OPT_SEED)) is not None
    how = "given" if given else f"random; replay with {OPT_SEED} {seed}"
    backends = ",".join(config.getoption(_dest(OPT_BACKEND)))
    asked = config.getoption(_dest(OPT_MODE))
    profile = profile_of(config)
    if asked:
        modes = ",".join(asked)
    elif profile.runs is not None:
        modes = "the profile's (see below)"
    else:
        modes = "the lab file's (steady suite: every mode of the target)"
    family = f" family={','.join(families(config))}" if names_family(config) else ""
    header = (
        f"dsrconform: target={config.getoption(_dest(OPT_TARGET))} backend={backends} "
        f"mode={modes}{family} seed={seed} ({how})"
    )
    # --- profiles (dsrconform.profiles): what a profile with runs of its own covers, first ---
    if profile.runs is None:
        return header
    from dsrconform.profiles import coverage_table

    used = {p[1] for p in platforms(config)}
    return [header, *(f"dsrconform: {line}" for line in coverage_table(profile, used))]


def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    from dsrconform.spec import BY_ID

    lowest = config.getoption(_dest(OPT_LEVEL))
    wanted = wanted_ids(config)
    bad = sorted(wanted - set(BY_ID))
    if bad:
        raise pytest.UsageError(
            f"{OPT_REQUIREMENT}: unknown requirement ID(s) {', '.join(map(repr, bad))}; "
            "`dsrconform spec` lists the known ones"
        )
    keep: list[pytest.Item] = []
    drop: list[pytest.Item] = []
    for item in items:
        ids = requirement_ids(item)
        unknown = [i for i in ids if i not in BY_ID]
        if unknown:
            raise pytest.UsageError(
                f"{item.nodeid}: unknown requirement ID(s) {', '.join(map(repr, unknown))}; "
                f"`dsrconform spec` lists the known ones"
            )
        below = bool(ids) and not any(at_or_above(BY_ID[i].level, lowest) for i in ids)
        for m in item.iter_markers(SCENARIO_FOR_MARKER):
            if len(m.args) != 1 or m.args[0] not in BY_ID:
                raise pytest.UsageError(
                    f"{item.nodeid}: {SCENARIO_FOR_MARKER}"
                    f"({', '.join(map(repr, m.args))}): one known requirement ID expected"
                )
            below = below or not at_or_above(BY_ID[m.args[0]].level, lowest)
        if below or (wanted and not wanted.intersection(ids)) or not _profile_selects(item, ids):
            drop.append(item)
        else:
            keep.append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep
    mark_not_applicable(config, items)


# --- NOT APPLICABLE (dsrconform.applicability): decided here, before any lab comes up -----------


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """A NOT APPLICABLE test ends here, skipped with its reasons, before its fixtures: no lab
    comes up for it."""
    reasons = item.stash.get(NOT_APPLICABLE_KEY, None)
    if reasons is not None:
        pytest.skip("NOT APPLICABLE: " + "; ".join(dict.fromkeys(reasons.values())))


# --- profiles (dsrconform.profiles): selection by scenario and platform ---------------------------


def item_scenario(item: pytest.Item) -> str | None:
    """The suites' scenario ``item`` judges: its ``dsr_scenario`` marker's, else its
    ``scenario`` parameter; None for a test of no scenario."""
    marker = item.get_closest_marker(SCENARIO_MARKER)
    if marker is not None and marker.args:
        return str(marker.args[0])
    callspec = getattr(item, "callspec", None)  # only parametrised items have one
    scenario = callspec.params.get("scenario") if callspec is not None else None
    return scenario if isinstance(scenario, str) else None


def _profile_selects(item: pytest.Item, ids: list[str]) -> bool:
    """Whether the run's profile keeps ``item`` (:meth:`dsrconform.profiles.Profile.selects`)."""
    profile = profile_of(item.config)
    if profile.runs is None:
        return True
    platform = item_platform(item)
    scenario = item_scenario(item)
    if scenario is None and "dsr_lab" in getattr(item, "fixturenames", ()):
        return False  # a lab test of no scenario: no run of the profile stands in for it
    mode, extra = scenario_platform(item.config, platform)
    return bool(profile.selects(scenario, mode, ids, extra=extra))


@pytest.fixture(scope="session")
def dsr_seed(request: pytest.FixtureRequest) -> int:
    """The run's seed (``--dsr-seed`` or the random one printed in the header)."""
    return request.config.stash[SEED_KEY]


# --- fixtures: the lab, the steady-state observations, checking with verdicts on the report ------


@pytest.fixture(scope="session")
def dsr_platform(request: pytest.FixtureRequest) -> Platform:
    """Session scope, parametrised
    (:func:`dsrconform.pytest_platforms.pytest_generate_tests`). The (backend, mode, family)
    this test's lab runs on: the only one asked for, or this parameter's."""
    param: Platform | None = getattr(request, "param", None)
    return param if param is not None else platforms(request.config)[0]


@pytest.fixture(scope="session")
def dsr_family(dsr_platform: Platform) -> str:
    """Session scope; depends on ``dsr_platform``. The address family (``ipv4``/``ipv6``) whose
    services this test drives: the scenarios of ``dsr_scenario`` address only its VIPs, and a
    test driving services itself picks them with
    ``dsrconform.families.family_services(dsr_lab.topology, dsr_family)``."""
    return dsr_platform[2]


def _lab_name(config: pytest.Config, platform: Platform | None = None) -> str:
    """One lab per pytest process (``s<pid>``: each pytest-xdist worker, and each of two runs
    at once, gets its own) and platform (``s<pid>p<n>`` when its tests use several), never
    shared: a process tears down only its own. A crashed run's lab is found by
    ``dsrconform lab down --all`` (the reaper)."""
    if platform is None or not several_platforms(config):
        return f"s{os.getpid()}"
    return f"s{os.getpid()}p{platforms(config).index(platform)}"


@pytest.fixture(scope="session")
def dsr_lab(request: pytest.FixtureRequest, dsr_platform: Platform) -> Iterator[Lab]:
    """Session scope; depends on ``dsr_platform``. The lab of ``--dsr-lab`` (default: the
    platform family's, labs/basic.yaml for ipv4, labs/dual.yaml for ipv6) brought up with the
    target (``--dsr-target``, ``--dsr-mutant``) on the platform's backend and mode; torn down
    at the end of the session (or when the next platform's tests start) unless
    ``--dsr-keep-lab``. Needs root (the test is skipped without)."""
    from dsrconform.lab import Lab

    if os.geteuid() != 0:
        pytest.skip("the dsrconform lab needs root (network namespaces, BPF)")
    config = request.config
    name = _lab_name(config, dsr_platform)
    path = lab_path(config, dsr_platform[2])
    about = f"{path}, {dsr_platform[0]}, {dsr_platform[1] or 'its mode'}"
    about += f", {dsr_platform[2]}" if names_family(config) else ""
    with ExitStack() as stack:
        with Progress(config, f"lab {name}", about) as progress:
            lab = stack.enter_context(
                Lab.up(
                    path,
                    backend=dsr_platform[0],
                    mode=dsr_platform[1],
                    name=name,
                    target=config.getoption(_dest(OPT_TARGET)),
                    mutant=config.getoption(_dest(OPT_MUTANT)),
                    keep=config.getoption(_dest(OPT_KEEP_LAB)),
                    target_options=target_options(config),
                    server_command=config.getoption(_dest(OPT_SERVER_COMMAND)),
                )
            )
            progress.last = f"up (ready {lab.ready_seconds or 0:.1f} s after deploying)"
        yield lab


@pytest.fixture(scope="session")
def dsr_scenario(
    request: pytest.FixtureRequest, dsr_lab: RunningLab, dsr_seed: int, dsr_platform: Platform
) -> Callable[[str], Any]:
    """Session scope; depends on ``dsr_lab``, ``dsr_seed`` and ``dsr_platform`` (whose family
    picks the services the scenarios drive: :func:`dsrconform.families.for_family`).
    ``dsr_scenario(name)`` runs the scenario ``name`` of
    :data:`dsrconform.chaos.suite.SCENARIOS` (a traffic mix, seeded, with its faults) on the lab
    at most once per session and platform and returns the
    :class:`~dsrconform.chaos.traffic.SteadyRun` (``.observations`` for ``dsr_check``); later calls
    return the same run. Its run directory goes to ``<--dsr-results>/<name>`` when a results
    directory is given (``<--dsr-results>/<platform id>/<name>`` when the selected
    tests use several platforms: ``netns-encap``, ``netns-encap-ipv6``). A scenario that
    fails is not run again: this and every later call raise :class:`ScenarioFailed` (reported
    as an error, its requirements UNKNOWN) with the first failure. An unknown name fails the
    test, listing the known ones.

    With ``--dsr-profile`` (:mod:`dsrconform.profiles`), the profile's run standing in for
    ``name`` on this platform runs instead, under its own name (one run may stand in for
    several scenarios: it runs once for all of them); a scenario it does not stand in for runs
    as it is."""
    from dsrconform.chaos import traffic
    from dsrconform.chaos.mixes import mix_for
    from dsrconform.chaos.suite import SCENARIOS, about
    from dsrconform.families import for_family

    lab = for_family(dsr_lab, dsr_platform[2])  # the family's services only
    results = request.config.getoption(_dest(OPT_RESULTS))
    if results and several_platforms(request.config):
        results = str(Path(results) / platform_id(dsr_platform, request.config))
    runs: dict[str, Any] = {}
    failed: dict[str, str] = {}

    no_evidence = request.config.getoption(_dest(OPT_NO_EVIDENCE))
    profile = profile_of(request.config)  # profiles: the variant standing in for a scenario
    mode, extra = scenario_platform(request.config, dsr_platform)

    def run(asked: str) -> Any:
        __tracebackhide__ = True
        if asked not in SCENARIOS:
            pytest.fail(f"unknown dsrconform scenario {asked!r}; known: {', '.join(SCENARIOS)}")
        sc = profile.variant(asked, mode, extra=extra)
        name = sc.name
        if name in failed:
            raise ScenarioFailed(f"scenario {name} failed earlier in this session: {failed[name]}")
        if name not in runs:
            out = Path(results) / name if results else None
            try:
                with Progress(request.config, f"scenario {name}", about(sc)) as progress:
                    runs[name] = traffic.observe_scenario(
                        lab,
                        sc,
                        mix_for(sc.traffic.mix, sc.traffic.overrides, dsr_seed),
                        out_dir=out,
                        progress=progress.say,
                        capture=out is not None and not no_evidence,  # pcap evidence of FAILs
                    )
            except Exception as e:
                failed[name] = f"{type(e).__name__}: {e}"
                raise ScenarioFailed(f"scenario {name} failed: {failed[name]}") from e
            if out is not None:
                _save_timeline(runs[name].observations, out)
            saved = request.config.stash.setdefault(SCENARIO_DIRS_KEY, [])
            saved.append((runs[name].observations, name, out))
            request.config.stash.setdefault(SCENARIO_RUNS_KEY, []).append(runs[name])
        return runs[name]

    return run


def _save_timeline(observations: Any, out: Path) -> None:
    """The scenario's timeline beside its files, for the report. A timeline that cannot be made
    costs the report its plot, not the scenario its verdicts: a warning says why."""
    import warnings

    from dsrconform.report.timeline import save_timeline

    try:
        save_timeline(observations, out)
    except Exception as e:  # a bug of the report's, not of the run: shown, not fatal
        warnings.warn(f"dsrconform: no timeline for {out}: {type(e).__name__}: {e}", stacklevel=2)


@pytest.fixture(scope="session")
def dsr_steady(dsr_scenario: Callable[[str], Any]) -> Any:
    """Session scope; depends on ``dsr_scenario``. The ``steady`` scenario's run: the default
    mix (:class:`dsrconform.chaos.mixes.Mix`), no fault."""
    return dsr_scenario("steady")


@pytest.fixture(scope="session")
def dsr_flood(dsr_scenario: Callable[[str], Any]) -> Any:
    """Session scope; depends on ``dsr_scenario``. The ``syn-flood`` scenario's run: long
    streams and new connections all along (:data:`dsrconform.chaos.mixes.FLOOD_MIX`) with a 12 s
    spoofed SYN flood from the lab's flood node (:class:`dsrconform.chaos.netfaults.SynFlood`), then
    a drain of one server from every service."""
    return dsr_scenario("syn-flood")


@pytest.fixture
def dsr_check(request: pytest.FixtureRequest) -> Callable[..., list[Any]]:
    """Function scope. ``dsr_check(observations, "RW-1", ..., params=None)`` runs the
    requirements' checkers, attaches the verdicts (and the scenario they judged) to the test's
    report, for the run's results, and ends the test: FAIL as a failure with the evidence,
    UNKNOWN as :class:`RequirementUnknown`, which pytest reports as an error (never a pass).
    When ``observations`` are a scenario run's saved under ``--dsr-results``, its run directory
    records the IDs (and ``params``) in its requirements.json, so ``dsrconform check`` judges
    each scenario again on what the suites judged it on."""
    from dsrconform.invariants import Status, check_all

    def check(observations: Any, *ids: str, params: Any = None) -> list[Any]:
        __tracebackhide__ = True
        scenario = _record_scenario_requirements(request.config, observations, ids, params)
        if scenario is not None:
            request.node.stash[SCENARIO_KEY] = scenario
        verdicts = check_all(observations, ids=ids, params=params)
        request.node.stash.setdefault(VERDICTS_KEY, []).extend(verdicts)
        failed = [v for v in verdicts if v.status == Status.FAIL]
        unknown = [v for v in verdicts if v.status == Status.UNKNOWN]
        if failed:
            _attach_evidence(request, observations, failed)
            pytest.fail("\n".join(_describe(v) for v in failed + unknown), pytrace=False)
        if unknown:
            raise RequirementUnknown("\n".join(_describe(v) for v in unknown))
        return verdicts

    return check


def _record_scenario_requirements(
    config: pytest.Config, observations: Any, ids: tuple[str, ...], params: Any
) -> tuple[str, str | None] | None:
    """Record the IDs in the scenario run's requirements.json (when it was saved); return the
    scenario's name and run directory relative to the results directory (None: the
    observations are not a scenario run's of this session)."""
    from dsrconform.runfiles import record_requirements

    results = results_dir(config)
    for obs, name, out in config.stash.get(SCENARIO_DIRS_KEY, []):
        if obs is observations:
            if out is None or results is None:
                return name, None
            given = {r: p for r, p in (params or {}).items() if r in ids}
            record_requirements(out, name, ids, given)
            return name, out.relative_to(results).as_posix()
    return None


def _attach_evidence(request: pytest.FixtureRequest, observations: Any, failed: list[Any]) -> None:
    """Attach to the test (:data:`ATTACHMENTS_KEY`) the pcap evidence of its ``failed``
    verdicts, cut from the captures of the scenario run ``observations`` came from
    (:func:`dsrconform.observe.evidence.attach_evidence`); nothing when they are not a scenario
    run saved under ``--dsr-results``."""
    from dsrconform.observe.evidence import attach_evidence

    results = results_dir(request.config)
    stash = request.config.stash
    run = next(
        (r for r in stash.get(SCENARIO_RUNS_KEY, []) if r.observations is observations), None
    )
    run_dir = next((d for o, _, d in stash.get(SCENARIO_DIRS_KEY, []) if o is observations), None)
    if run is None or results is None or run_dir is None:
        return
    attached, warnings = attach_evidence(run, failed, run_dir, results, request.node.name)
    if attached:
        request.node.stash.setdefault(ATTACHMENTS_KEY, []).extend(attached)
    for text in warnings:
        request.node.warn(pytest.PytestWarning(text))


def _describe(v: Any) -> str:
    lines = [f"{v.requirement} {v.status}: {v.message}"]
    if v.thresholds:
        lines.append(f"  measured {v.measured} against {v.thresholds}")
    lines += [f"  missing: {m}" for m in v.missing]
    for e in v.evidence[:5]:
        where = " | ".join(x for x in (e.flow, e.packet, e.link) if x)
        lines.append(f"  evidence: {e.message}" + (f" [{where}]" if where else ""))
    return "\n".join(lines)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    ids = requirement_ids(item)
    if ids:
        report.user_properties.append((PROP_REQUIREMENTS, ids))
    platform = item_platform_id(item)
    if platform is not None:
        report.user_properties.append((PROP_PLATFORM, platform))
    if "dsr_lab" in getattr(item, "fixturenames", ()):
        report.user_properties.append((PROP_FAMILY, item_platform_or_run(item)[2]))
    reasons = item.stash.get(NOT_APPLICABLE_KEY, None)
    if reasons is not None and call.when == "setup":
        report.user_properties.append((PROP_NOT_APPLICABLE, reasons))
    if call.when != "call":
        return report
    unknown = call.excinfo is not None and call.excinfo.errisinstance(RequirementUnknown)
    if report.failed and unknown:
        report.user_properties.append((PROP_UNKNOWN, True))
    scenario = item.stash.get(SCENARIO_KEY, None)
    if scenario is not None:
        report.user_properties.append((PROP_SCENARIO, scenario))
    verdicts = item.stash.get(VERDICTS_KEY, [])
    if verdicts:
        rows = [v.model_dump(mode="json") for v in verdicts]
        report.user_properties.append((PROP_VERDICTS, rows))
    attachments = item.stash.get(ATTACHMENTS_KEY, [])
    if attachments:
        rows = [a.model_dump(mode="json") for a in attachments]
        report.user_properties.append((PROP_ATTACHMENTS, rows))
    return report


@pytest.hookimpl(tryfirst=True)
def pytest_report_teststatus(
    report: pytest.TestReport, config: pytest.Config
) -> tuple[str, str, str] | None:
    """An UNKNOWN is an error, not a failure: counted as ``error``, listed by ``-rE`` and under
    ERRORS (``ERROR at call of ...``) with its longrepr (what was missing). The report stays
    ``failed``, so the exit status is 1 and ``-x``, ``--lf`` treat it as not passed. A NOT
    APPLICABLE test is counted as ``not applicable`` (``n``), not as a skip."""
    if is_unknown(report):
        return "error", "E", "ERROR"
    if is_not_applicable(report):
        return "not applicable", "n", "NOT APPLICABLE"
    return None
