"""Where the plugin's lab tests run: platforms (backend, rewrite mode, address family), their
parametrisation and ids, and the ``dsr_platform`` / ``dsr_family`` fixtures.

A *platform* is one lab a test runs in: a backend of ``--dsr-backend``, a rewrite mode
(``--dsr-mode``, else the lab file's and, for ``dsr_every_mode`` tests, the target's others),
and an address family of ``--dsr-family`` (default ipv4): the family whose services the test's
scenarios drive (:mod:`dsrconform.families`). Every lab test runs once per platform it is to
run on; with more than one, test ids name it (``[netns-server-nat]``, and when the run asks for
any family but ipv4 alone, the family too: ``[netns-encap-ipv6]``), and so do the results'
``platform`` and the run directories of several platforms. The parameter is session-scoped, so
pytest groups tests by it: one lab is up at a time.

:mod:`dsrconform.pytest_plugin` re-exports the hooks defined here (pytest finds them on the
registered plugin module) and defines the fixtures over them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from dsrconform.pytest_options import (
    EVERY_MODE_MARKER,
    OPT_BACKEND,
    OPT_FAMILY,
    OPT_LAB,
    OPT_MODE,
    OPT_PROFILE,
    OPT_TARGET,
    _dest,
    lab_path,
    requirement_ids,
    target_options,
)
from dsrconform.runopts import DEFAULT_FAMILIES

if TYPE_CHECKING:
    from dsrconform.topology import Mode

Platform = tuple[str, "Mode | None", str]
"""Where a lab test runs: (backend, rewrite mode or None for the lab file's, address family)."""

PLATFORMS_KEY = pytest.StashKey[tuple[list[Platform], list[Platform]]]()
USED_PLATFORMS_KEY = pytest.StashKey[list[Platform]]()
NOT_APPLICABLE_KEY = pytest.StashKey[dict[str, str]]()
"""On a test's item: requirement ID -> why it is NOT APPLICABLE to the target (the test is not
run; :mod:`dsrconform.applicability`)."""


def profile_of(config: pytest.Config) -> Any:
    """The run's :class:`~dsrconform.profiles.Profile` (``--dsr-profile``; full by default)."""
    from dsrconform.profiles import get_profile

    return get_profile(config.getoption(_dest(OPT_PROFILE)))


def families(config: pytest.Config) -> tuple[str, ...]:
    """The address families of ``--dsr-family`` (default: ipv4)."""
    return tuple(config.getoption(_dest(OPT_FAMILY)) or DEFAULT_FAMILIES)


def names_family(config: pytest.Config) -> bool:
    """Whether platform ids name the family: when the run asks for any but ipv4 alone (an
    IPv4-only run keeps the ids, results and directories it always had)."""
    return families(config) != DEFAULT_FAMILIES


def platforms_of(config: pytest.Config) -> tuple[list[Platform], list[Platform]]:
    """(every lab test's platforms, the extra ones of tests marked ``dsr_every_mode``): each
    backend of ``--dsr-backend`` times each family of ``--dsr-family`` times each mode of
    ``--dsr-mode``, with no extra ones. Without ``--dsr-mode``: the lab file's mode, and for
    marked tests every other mode the target (``--dsr-target``) lists in its ``modes`` that the
    lab file loads in (a gateway-nat run needs a gateway node); when there are such modes, the
    lab file's is named rather than ``None``, so results and test ids say which mode each run
    was. The modes are read from the first family's lab file (labs/dual.yaml is labs/basic.yaml
    with IPv6 added: the same nodes, so the same modes). Computed once per run."""
    if PLATFORMS_KEY in config.stash:
        return config.stash[PLATFORMS_KEY]
    backends = config.getoption(_dest(OPT_BACKEND))
    fams = families(config)
    asked: tuple[Mode | None, ...] | None = config.getoption(_dest(OPT_MODE))
    extra_modes: list[Mode] = []
    if asked is None:
        own, extra_modes = _other_modes(config)
        # profiles: a profile may name the main mode and the extra ones (among those possible)
        profile = profile_of(config)
        main: Mode | None = profile.main_mode
        moved = False
        if own is not None and main is not None and main in extra_modes:
            extra_modes = [m for m in [own, *extra_modes] if m != main]
            own, moved = main, True
        if profile.extra_modes is not None:
            extra_modes = [m for m in extra_modes if m in profile.extra_modes]
        asked = (own,) if extra_modes or moved else (None,)
    base: list[Platform] = [(b, m, f) for b in backends for f in fams for m in asked]
    extra: list[Platform] = [(b, m, f) for b in backends for f in fams for m in extra_modes]
    out = (base, extra)
    config.stash[PLATFORMS_KEY] = out
    return out


def _other_modes(config: pytest.Config) -> tuple[Mode | None, list[Mode]]:
    """(the lab file's mode, the target's other modes the lab file loads in); (None, []) when
    the lab file does not load (the lab fixture reports why) or the target is unknown."""
    from dsrconform.errors import ConfigError
    from dsrconform.target import load_target
    from dsrconform.topofile import load_topology

    path = lab_path(config)
    try:
        own = load_topology(path).mode
        supported = load_target(config.getoption(_dest(OPT_TARGET))).modes
    except (ConfigError, OSError):
        return None, []
    others = []
    for mode in supported:
        if mode == own:
            continue
        try:
            load_topology(path, mode=mode)
        except ConfigError:
            continue  # this lab cannot run in that mode (e.g. gateway-nat without a gateway)
        others.append(mode)
    return own, others


def platforms(config: pytest.Config) -> list[Platform]:
    """Every (backend, mode, family) the run's lab tests use, the extra modes' last."""
    base, extra = platforms_of(config)
    return base + extra


def platform_id(p: Platform, config: pytest.Config) -> str:
    """``<backend>-<mode>`` (``lab-mode``: the lab file's), ``-<family>`` added when the run
    names families (:func:`names_family`)."""
    base = f"{p[0]}-{p[1] or 'lab-mode'}"
    return f"{base}-{p[2]}" if names_family(config) else base


def scenario_platform(config: pytest.Config, platform: Platform | None) -> tuple[Any, bool]:
    """(mode, whether it is an extra platform of dsr_every_mode tests) of a lab test's
    platform (None: the run's only one)."""
    base, extra = platforms_of(config)
    if platform is None:
        platform = (base + extra)[0] if base + extra else ("netns", None, DEFAULT_FAMILIES[0])
    return platform[1], platform in extra and platform not in base


def item_platform(item: pytest.Item) -> Platform | None:
    """The ``dsr_platform`` parameter of ``item`` (None: not parametrised by it)."""
    callspec = getattr(item, "callspec", None)  # only parametrised items have one
    platform: Platform | None = callspec.params.get("dsr_platform") if callspec else None
    return platform


def item_platform_or_run(item: pytest.Item) -> Platform:
    """The platform a lab test runs on: its parameter, else the run's only one."""
    return item_platform(item) or platforms(item.config)[0]


def item_platform_id(item: pytest.Item) -> str | None:
    """``<backend>-<mode>[-<family>]`` of a lab test when the run has several platforms."""
    platform = item_platform(item)
    return platform_id(platform, item.config) if platform is not None else None


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Every test that needs the lab runs once per (backend, mode, family) it is to run on,
    when the run has more than one (ids like ``[netns-server-nat]``, ``[netns-encap-ipv6]``;
    with one, test ids stay as they are). The parameter is session-scoped, so pytest groups the
    tests by it: one lab is up at a time."""
    if "dsr_platform" not in metafunc.fixturenames:
        return
    base, extra = platforms_of(metafunc.config)
    if len(base) + len(extra) > 1:
        every = metafunc.definition.get_closest_marker(EVERY_MODE_MARKER) is not None
        # profiles: a profile with its own runs decides each test's platforms at collection
        every = every or profile_of(metafunc.config).runs is not None
        combos = base + extra if every else base
        ids = [platform_id(c, metafunc.config) for c in combos]
        metafunc.parametrize("dsr_platform", combos, indirect=True, scope="session", ids=ids)


def pytest_collection_finish(session: pytest.Session) -> None:
    """Note the platforms the selected tests run on (after deselection): a run whose tests all
    use one (the fault suites alone, or ``-k`` on one mode) keeps one lab name and the plain
    results layout."""
    used: list[Platform] = []
    for item in session.items:
        platform = item_platform(item)
        if platform is not None and platform not in used:
            used.append(platform)
    session.config.stash[USED_PLATFORMS_KEY] = used


def several_platforms(config: pytest.Config) -> bool:
    """Whether the selected tests run on more than one (backend, mode, family)."""
    return len(config.stash.get(USED_PLATFORMS_KEY, [])) > 1


# --- NOT APPLICABLE (dsrconform.applicability): decided at collection, before any lab comes up ---


def mark_not_applicable(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Stash the reasons on every lab test NOT APPLICABLE to the target on its platform: its
    platform's mode or address family, or a family of its lab file's services, is not among the
    target's capabilities, or every requirement it cites concerns only modes the target lacks.
    A lab test that is to run in a family its lab file has no service of stops the run here
    (a usage error naming the file and the fix: :func:`dsrconform.families.missing_family`),
    before any lab. Nothing when the target or a lab file does not load (the lab fixture
    reports why)."""
    from dsrconform.applicability import Capabilities, lab_test_reasons
    from dsrconform.errors import ConfigError
    from dsrconform.families import lab_families, missing_family
    from dsrconform.target import load_target
    from dsrconform.topofile import load_topology

    lab_items = [i for i in items if "dsr_lab" in getattr(i, "fixturenames", ())]
    if not lab_items:
        return
    name = config.getoption(_dest(OPT_TARGET))
    try:
        target = load_target(name, options=target_options(config))
    except ConfigError:
        return
    caps = Capabilities(name, tuple(target.modes), tuple(target.families))
    topos: dict[str, Any] = {}
    for family in families(config):
        try:
            topos[family] = load_topology(lab_path(config, family))
        except (ConfigError, OSError):
            continue
    for item in lab_items:
        _, mode, family = item_platform_or_run(item)
        topo = topos.get(family)
        if topo is None:
            continue
        kinds = lab_families(topo.services)
        reasons = lab_test_reasons(caps, mode or topo.mode, family, requirement_ids(item), kinds)
        if reasons is not None:
            item.stash[NOT_APPLICABLE_KEY] = reasons
            continue
        # An IPv4 run of a lab with no service at all is left to the lab (as before families).
        why = missing_family(lab_path(config, family), topo.services, family, flag=OPT_LAB)
        if why is not None and (topo.services or family != "ipv4"):
            raise pytest.UsageError(f"{OPT_FAMILY} {family}: {why}")
