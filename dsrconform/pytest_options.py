"""The pytest plugin's options (group ``dsrconform``, names in the ``OPT_*`` constants) and
marker names, and the readers of option values several parts of the plugin share.

:mod:`dsrconform.pytest_plugin` re-exports ``pytest_addoption`` (pytest finds hooks on the
registered plugin module) and every ``OPT_*``; import them from there or from here. Imports
nothing heavy: ``dsrconform run`` and ``--help`` stay fast.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from dsrconform.runopts import (
    BACKENDS,
    DEFAULT_FAMILIES,
    DEFAULT_LEVEL,
    FAMILIES,
    FAMILY_LABS,
    MODES,
    PROFILES,
    choice_list,
    default_lab,
    parse_seed,
)
from dsrconform.spec import LEVELS

GROUP = "dsrconform"
OPT_LAB = "--dsr-lab"
OPT_BACKEND = "--dsr-backend"
OPT_TARGET = "--dsr-target"
OPT_MODE = "--dsr-mode"
OPT_FAMILY = "--dsr-family"
OPT_LEVEL = "--dsr-level"
OPT_SEED = "--dsr-seed"
OPT_RESULTS = "--dsr-results"
OPT_KEEP_LAB = "--dsr-keep-lab"
OPT_PROFILE = "--dsr-profile"
OPT_NO_EVIDENCE = "--dsr-no-evidence"
OPT_MUTANT = "--dsr-mutant"
OPT_TARGET_OPT = "--dsr-target-opt"
OPT_SERVER_COMMAND = "--dsr-server-command"
OPT_REQUIREMENT = "--dsr-requirement"

MARKER = "requirement"
EVERY_MODE_MARKER = "dsr_every_mode"
SCENARIO_FOR_MARKER = "dsr_scenario_for"
SCENARIO_MARKER = "dsr_scenario"  # profiles: the suites' scenario a test judges


def _dest(opt: str) -> str:
    return opt.removeprefix("--").replace("-", "_")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup(GROUP, "dsrconform: DSR load-balancer conformance")
    group.addoption(
        OPT_LAB,
        dest=_dest(OPT_LAB),
        metavar="FILE",
        default=None,
        help="lab topology file, for every family (default: per family, of the rootdir: "
        + ", ".join(f"{f} {lab}" for f, lab in FAMILY_LABS.items())
        + ")",
    )
    group.addoption(
        OPT_BACKEND,
        dest=_dest(OPT_BACKEND),
        type=choice_list(BACKENDS),
        default=("netns",),
        metavar="NAME[,NAME]",
        help="where the lab runs: network namespaces (netns, default) or Docker containers "
        "(docker); both (netns,docker) runs every lab test on each",
    )
    group.addoption(
        OPT_TARGET,
        dest=_dest(OPT_TARGET),
        default="reference",
        metavar="NAME",
        help="DSR stack under test, a registered dsrconform.targets name (default: reference)",
    )
    group.addoption(
        OPT_TARGET_OPT,
        dest=_dest(OPT_TARGET_OPT),
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a setting of the target's own (repeatable), e.g. katran_src=DIR",
    )
    group.addoption(
        OPT_SERVER_COMMAND,
        dest=_dest(OPT_SERVER_COMMAND),
        default=None,
        metavar="COMMAND",
        help="the servers' application instead of the project's (docs/lab.md), e.g. "
        "'sh examples/servers/nginx.sh'",
    )
    group.addoption(
        OPT_MODE,
        dest=_dest(OPT_MODE),
        type=choice_list(MODES),
        default=None,
        metavar="MODE[,MODE...]",
        help=f"rewrite mode of the servers, {'/'.join(MODES)} (default: the lab file's); "
        "several run every lab test in each",
    )
    group.addoption(
        OPT_FAMILY,
        dest=_dest(OPT_FAMILY),
        type=choice_list(FAMILIES),
        default=DEFAULT_FAMILIES,
        metavar="FAMILY[,FAMILY]",
        help="address families of the services the lab tests drive, "
        f"{'/'.join(FAMILIES)} (default: {','.join(DEFAULT_FAMILIES)}); several run every lab "
        "test in each. Without --dsr-lab each family brings up its own lab: "
        + ", ".join(f"{f} {lab}" for f, lab in FAMILY_LABS.items()),
    )
    group.addoption(
        OPT_LEVEL,
        dest=_dest(OPT_LEVEL),
        choices=LEVELS,
        default=DEFAULT_LEVEL,
        help="lowest requirement level to test: tests citing only less strict requirements are "
        f"deselected (default: {DEFAULT_LEVEL}, as `dsrconform run`; MAY: every test)",
    )
    group.addoption(
        OPT_SEED,
        dest=_dest(OPT_SEED),
        type=parse_seed,
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
        OPT_REQUIREMENT,
        dest=_dest(OPT_REQUIREMENT),
        action="append",
        default=[],
        metavar="ID[,ID...]",
        help="run only the tests citing one of these requirement IDs (repeatable)",
    )
    group.addoption(
        OPT_KEEP_LAB,
        dest=_dest(OPT_KEEP_LAB),
        action="store_true",
        help="leave the lab up after the run for inspection (remove it yourself)",
    )
    group.addoption(
        OPT_NO_EVIDENCE,
        dest=_dest(OPT_NO_EVIDENCE),
        action="store_true",
        help="no packet captures while scenarios run: a FAIL then has no pcap window of its "
        "evidence (faster mutant runs: cutting windows from the captures takes seconds a FAIL)",
    )
    group.addoption(
        OPT_PROFILE,
        dest=_dest(OPT_PROFILE),
        choices=PROFILES,
        default=None,
        help="the run's profile (set by `dsrconform run --profile`): quick runs the short "
        "scenarios of a pull-request gate; recorded in the results",
    )


def lab_path(config: pytest.Config, family: str | None = None) -> str:
    """The lab file of the tests of address ``family``: ``--dsr-lab``, else the family's own
    (:data:`dsrconform.runopts.FAMILY_LABS`, of the rootdir); ``family`` None: the run's
    first family's."""
    given = config.getoption(_dest(OPT_LAB))
    if given:
        return str(given)
    family = family or config.getoption(_dest(OPT_FAMILY))[0]
    return str(config.rootpath / default_lab(family))


def target_options(config: pytest.Config) -> dict[str, str]:
    """The target's own settings given with ``--dsr-target-opt KEY=VALUE``."""
    from dsrconform.errors import ConfigError
    from dsrconform.target import parse_target_options

    try:
        return parse_target_options(config.getoption(_dest(OPT_TARGET_OPT)), flag=OPT_TARGET_OPT)
    except ConfigError as e:
        raise pytest.UsageError(str(e)) from None


def wanted_ids(config: pytest.Config) -> set[str]:
    """The IDs of every ``--dsr-requirement``."""
    values = config.getoption(_dest(OPT_REQUIREMENT))
    return {i.strip() for v in values for i in v.split(",") if i.strip()}


def results_dir(config: pytest.Config) -> Path | None:
    """``--dsr-results`` as a path (None: not given)."""
    results = config.getoption(_dest(OPT_RESULTS))
    return Path(results) if results else None


def requirement_ids(item: pytest.Item) -> list[str]:
    """The requirement IDs cited by ``item``'s ``requirement`` markers (outermost first)."""
    return [i for m in item.iter_markers(MARKER) for i in m.args]
