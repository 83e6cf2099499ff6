"""dsrconform's pytest plugin (entry point ``pytest11: dsrconform``): options, marker, seed.

What it adds to every pytest run in an environment where dsrconform is installed:

- the option group ``dsrconform`` (names in the ``OPT_*`` constants): which lab file, lab backend,
  target, rewrite mode, requirement level, random seed, results directory, and whether to keep the
  lab up after the run;
- the marker ``@pytest.mark.requirement("RW-1", ...)`` tying a test to requirement IDs of
  :mod:`dsrconform.spec`; an unknown ID stops collection with a usage error naming the test;
- ``--dsr-level``: tests whose requirements are all below that level are deselected;
- one seed per run, random unless ``--dsr-seed`` is given, shown in the report header so any run
  can be replayed, and available to tests as the ``dsr_seed`` fixture.

The module imports nothing heavy: lab, target and spec modules load inside hooks, only when used.
"""

from __future__ import annotations

import argparse
import json
import os
import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

GROUP = "dsrconform"
OPT_LAB = "--dsr-lab"
OPT_BACKEND = "--dsr-backend"
OPT_TARGET = "--dsr-target"
OPT_MODE = "--dsr-mode"
OPT_LEVEL = "--dsr-level"
OPT_SEED = "--dsr-seed"
OPT_RESULTS = "--dsr-results"
OPT_KEEP_LAB = "--dsr-keep-lab"
OPT_MUTANT = "--dsr-mutant"
DEFAULT_LAB = "labs/basic.yaml"

BACKENDS = ("netns", "docker")
MODES = ("encap", "server-nat", "gateway-nat")
LEVELS = ("MUST", "SHOULD", "MAY")  # strictest first
MARKER = "requirement"

SEED_KEY = pytest.StashKey[int]()
VERDICTS_KEY = pytest.StashKey[list[Any]]()
RESULTS_FILE = "verdicts.jsonl"


class RequirementUnknown(Exception):
    """A requirement could not be decided (data missing, a checker crashed): never a pass."""


def _dest(opt: str) -> str:
    return opt.removeprefix("--").replace("-", "_")


def _seed(value: str) -> int:
    try:
        seed = int(value, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"takes an integer, got {value!r}") from None
    if seed < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {seed}")
    return seed


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup(GROUP, "dsrconform: DSR load-balancer conformance")
    group.addoption(
        OPT_LAB,
        dest=_dest(OPT_LAB),
        metavar="FILE",
        default=None,
        help=f"lab topology file (default: {DEFAULT_LAB} of the rootdir)",
    )
    group.addoption(
        OPT_BACKEND,
        dest=_dest(OPT_BACKEND),
        choices=BACKENDS,
        default="netns",
        help="where the lab runs: network namespaces (default) or Docker containers",
    )
    group.addoption(
        OPT_TARGET,
        dest=_dest(OPT_TARGET),
        default="reference",
        metavar="NAME",
        help="DSR stack under test, a registered dsrconform.targets name (default: reference)",
    )
    group.addoption(
        OPT_MODE,
        dest=_dest(OPT_MODE),
        choices=MODES,
        default=None,
        help="rewrite mode of the servers (default: every mode the suite covers)",
    )
    group.addoption(
        OPT_LEVEL,
        dest=_dest(OPT_LEVEL),
        choices=LEVELS,
        default="MAY",
        help="lowest requirement level to test: MUST runs only MUST tests (default: MAY, all)",
    )
    group.addoption(
        OPT_SEED,
        dest=_dest(OPT_SEED),
        type=_seed,
        default=None,
        metavar="N",
        help="seed for every random choice (default: random, printed in the header)",
    )
    group.addoption(
        OPT_RESULTS,
        dest=_dest(OPT_RESULTS),
        metavar="DIR",
        default=None,
        help="directory for verdicts, evidence and reports",
    )
    group.addoption(
        OPT_MUTANT,
        dest=_dest(OPT_MUTANT),
        metavar="NAME",
        default=None,
        help="run a mutant of the target instead (`dsrconform mutants` lists them)",
    )
    group.addoption(
        OPT_KEEP_LAB,
        dest=_dest(OPT_KEEP_LAB),
        action="store_true",
        help="leave the lab up after the run for inspection (remove it yourself)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}(*ids): the dsrconform requirement IDs (e.g. 'RW-1') this test checks",
    )
    seed = config.getoption(_dest(OPT_SEED))
    config.stash[SEED_KEY] = seed if seed is not None else random.SystemRandom().randrange(2**32)


def pytest_report_header(config: pytest.Config) -> str:
    seed = config.stash[SEED_KEY]
    given = config.getoption(_dest(OPT_SEED)) is not None
    how = "given" if given else f"random; replay with {OPT_SEED} {seed}"
    return (
        f"dsrconform: target={config.getoption(_dest(OPT_TARGET))} "
        f"backend={config.getoption(_dest(OPT_BACKEND))} seed={seed} ({how})"
    )


def requirement_ids(item: pytest.Item) -> list[str]:
    """The requirement IDs cited by ``item``'s ``requirement`` markers (outermost first)."""
    return [i for m in item.iter_markers(MARKER) for i in m.args]


def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    from dsrconform.spec import BY_ID

    lowest = LEVELS.index(config.getoption(_dest(OPT_LEVEL)))
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
        if ids and all(LEVELS.index(BY_ID[i].level) > lowest for i in ids):
            drop.append(item)
        else:
            keep.append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@pytest.fixture(scope="session")
def dsr_seed(request: pytest.FixtureRequest) -> int:
    """The run's seed (``--dsr-seed`` or the random one printed in the header)."""
    return request.config.stash[SEED_KEY]


# --- fixtures: the lab, the steady-state observations, checking with verdicts on the report ------


def _lab_name(config: pytest.Config) -> str:
    """One lab per pytest-xdist worker (``suite0``, ``suite1``...), never shared: a worker
    tears down only its own."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    return "suite" + "".join(c for c in worker if c.isdigit())[:6]


@pytest.fixture(scope="session")
def dsr_lab(request: pytest.FixtureRequest) -> Iterator[Any]:
    """Session scope. The lab of ``--dsr-lab`` (default labs/basic.yaml) brought up with the
    target (``--dsr-target``, ``--dsr-mutant``), backend and mode asked for; torn down at the
    end of the session unless ``--dsr-keep-lab``. Needs root (the test is skipped without)."""
    from dsrconform.lab import Lab

    if os.geteuid() != 0:
        pytest.skip("the dsrconform lab needs root (network namespaces, BPF)")
    config = request.config
    path = config.getoption(_dest(OPT_LAB)) or str(config.rootpath / DEFAULT_LAB)
    with Lab.up(
        path,
        backend=config.getoption(_dest(OPT_BACKEND)),
        mode=config.getoption(_dest(OPT_MODE)),
        name=_lab_name(config),
        target=config.getoption(_dest(OPT_TARGET)),
        mutant=config.getoption(_dest(OPT_MUTANT)),
        keep=config.getoption(_dest(OPT_KEEP_LAB)),
    ) as lab:
        yield lab


@pytest.fixture(scope="session")
def dsr_steady(request: pytest.FixtureRequest, dsr_lab: Any, dsr_seed: int) -> Any:
    """Session scope; depends on ``dsr_lab`` and ``dsr_seed``. One steady-state run
    (:func:`dsrconform.steady.observe_steady_state`, the default mix, seeded) on the lab; its
    run directory goes to ``<--dsr-results>/steady`` when a results directory is given."""
    from dsrconform.steady import Mix, observe_steady_state

    results = request.config.getoption(_dest(OPT_RESULTS))
    out = Path(results) / "steady" if results else None
    return observe_steady_state(dsr_lab, Mix(seed=dsr_seed), out_dir=out)


@pytest.fixture(scope="session")
def dsr_flood(request: pytest.FixtureRequest, dsr_lab: Any, dsr_seed: int) -> Any:
    """Session scope; depends on ``dsr_lab`` and ``dsr_seed``. One run of the flood mix
    (:data:`dsrconform.scenarios.FLOOD_MIX`: long streams, new connections all along) with a
    12 s spoofed SYN flood from the lab's flood node (:func:`dsrconform.scenarios.syn_flood`);
    its run directory goes to ``<--dsr-results>/flood`` when a results directory is given."""
    from dataclasses import replace

    from dsrconform.scenarios import FLOOD_MIX, syn_flood
    from dsrconform.steady import observe_steady_state

    results = request.config.getoption(_dest(OPT_RESULTS))
    out = Path(results) / "flood" if results else None
    mix = replace(FLOOD_MIX, seed=dsr_seed)
    return observe_steady_state(dsr_lab, mix, out_dir=out, fault=syn_flood())


@pytest.fixture
def dsr_check(request: pytest.FixtureRequest) -> Callable[..., list[Any]]:
    """Function scope. ``dsr_check(observations, "RW-1", ..., params=None)`` runs the
    requirements' checkers, attaches the verdicts to the test's report (and the results
    directory's verdicts.jsonl), and ends the test: FAIL as a failure with the evidence,
    UNKNOWN as :class:`RequirementUnknown` (never a pass)."""
    from dsrconform.invariants import Status, check_all

    def check(observations: Any, *ids: str, params: Any = None) -> list[Any]:
        __tracebackhide__ = True
        verdicts = check_all(observations, ids=ids, params=params)
        request.node.stash.setdefault(VERDICTS_KEY, []).extend(verdicts)
        failed = [v for v in verdicts if v.status == Status.FAIL]
        unknown = [v for v in verdicts if v.status == Status.UNKNOWN]
        if failed:
            pytest.fail("\n".join(_describe(v) for v in failed + unknown), pytrace=False)
        if unknown:
            raise RequirementUnknown("\n".join(_describe(v) for v in unknown))
        return verdicts

    return check


def _describe(v: Any) -> str:
    lines = [f"{v.requirement} {v.status}: {v.message}"]
    if v.thresholds:
        lines.append(f"  measured {v.measured} against {v.thresholds}")
    lines += [f"  missing: {m}" for m in v.missing]
    for e in v.evidence[:5]:
        where = " | ".join(x for x in (e.flow, e.packet, e.link) if x)
        lines.append(f"  evidence: {e.message}" + (f" [{where}]" if where else ""))
    return "\n".join(lines)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    if call.when != "call":
        return
    verdicts = item.stash.get(VERDICTS_KEY, [])
    if not verdicts:
        return
    report = outcome.get_result()
    rows = [v.model_dump(mode="json") for v in verdicts]
    report.user_properties.append(("dsrconform_verdicts", rows))
    results = item.config.getoption(_dest(OPT_RESULTS))
    if results:
        Path(results).mkdir(parents=True, exist_ok=True)
        with (Path(results) / RESULTS_FILE).open("a") as f:
            for row in rows:
                f.write(json.dumps({"test": item.nodeid, **row}) + "\n")
