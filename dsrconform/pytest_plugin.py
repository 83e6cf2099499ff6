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
import random

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

BACKENDS = ("netns", "docker")
MODES = ("encap", "server-nat", "gateway-nat")
LEVELS = ("MUST", "SHOULD", "MAY")  # strictest first
MARKER = "requirement"

SEED_KEY = pytest.StashKey[int]()


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
        OPT_LAB, dest=_dest(OPT_LAB), metavar="FILE", help="lab topology file (labs/*.yaml)"
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
