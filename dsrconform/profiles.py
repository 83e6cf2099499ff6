"""Run profiles: which scenarios a ``dsrconform run`` runs, in which modes, and what they judge.

``full`` (the nightly gate, and the default) runs every scenario of
:data:`dsrconform.chaos.suite.SCENARIOS` that a selected test asks for, as they are. ``quick``
(the pull-request gate, ``dsrconform run --profile quick``) replaces them with a few short
:class:`ProfileRun`\\ s, each a chaos :class:`~dsrconform.chaos.scenario.Scenario` (a named
mix and faults), run on one platform mode and standing in for one or more of the suites'
scenarios; a test is kept only when a run of the profile stands in for its
scenario on its platform *and* judges its requirement (:meth:`Profile.selects`): a requirement
a short run could not decide is left out (deselected), never left UNKNOWN, and the coverage
table (:func:`coverage_table`, printed in the run's header) says what is judged where and what
is left to the full run.

Nothing here needs a lab or root: the pytest plugin (:mod:`dsrconform.pytest_plugin`) asks
:func:`get_profile` for the run's profile and uses it at collection (deselection, platform
modes) and in its ``dsr_scenario`` fixture (the variant that runs).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from dsrconform.chaos.scenario import Scenario
from dsrconform.chaos.suite import SCENARIOS

if TYPE_CHECKING:
    from dsrconform.topology import Mode

__all__ = [
    "FULL",
    "PROFILES",
    "QUICK",
    "Profile",
    "ProfileRun",
    "coverage_table",
    "get_profile",
]

GATE_PROBE_FLOWS = 256
"""Tuples per probe set in the quick gate run: SC-4 judges 20 or more (SC-2, which needs 1000,
is left to the full run); fewer tuples, fewer tap records to read after the run."""

GATE = Scenario.model_validate(
    {
        "name": "gate",
        "description": "13-15 s of the scale mix with the steady mix's extras: a server "
        "drained and made active again inside tuple probes, then hostile packets",
        "traffic": {"mix": "gate"},
        # The drain ~0.8 s in, active again ~4 s in, each change inside its own set of tuple probes
        # (SC-1, SC-3, SC-4, AF-1: the full scale scenario's last two changes; a stack without a
        # connection table moves the drained server's streams), then the hostile packets, each
        # frame sent 4 times (RB-1, RB-2, RB-4) while the mix still runs.
        "method": [
            {
                "id": "drain",
                "at": 0,
                "duration": 0,
                "fault": {
                    "kind": "server-drain",
                    "server_index": 1,
                    "probe": True,
                    "probe_flows": GATE_PROBE_FLOWS,
                },
            },
            {"fault": {"kind": "hostile-packets", "repeats": 4}, "after": "drain", "delay": 0.3},
        ],
    }
)
"""The quick gate run."""

STEADY_KILL = Scenario.model_validate(
    {
        "name": "steady-kill",
        "description": "the short steady mix of `dsrconform steady --quick` with 7 s streams, "
        "across which a MUX is killed and restarted empty",
        "traffic": {"mix": "kill"},
        # The failover MUX killed 0.5 s after the ICMP errors went (~3 s into the traffic),
        # restarted empty 1 s after its routes were withdrawn (they return ~2 s later): the
        # connections it carried are re-hashed to the other MUX and back (MF-1).
        "method": [{"fault": {"kind": "mux-kill"}, "at": 0.5, "duration": 1}],
    }
)
"""The quick profile's run in gateway-nat."""


@dataclass(frozen=True)
class ProfileRun:
    """One scenario run of a profile: ``scenario`` runs (at most once per platform) wherever a
    selected test asks for one of the suites' scenarios it ``judges``, on a platform of
    ``modes``; it judges only the requirements listed there for that scenario."""

    scenario: Scenario
    judges: Mapping[str, tuple[str, ...]]
    """Suite scenario name (what a test asks ``dsr_scenario`` for) -> requirement IDs judged."""
    modes: tuple[Mode, ...] = ()
    """The extra platform modes it runs in (those where only ``dsr_every_mode`` tests run);
    empty: the run's main platform(s)."""
    mutants: tuple[str, ...] = ()
    """The catalogued mutants (``dsrconform mutants``) it is meant to catch."""


@dataclass(frozen=True)
class Profile:
    """A run profile. ``runs`` None: every scenario of SCENARIOS as it is, every test kept.
    ``main_mode``: the mode of the main platform when ``--dsr-mode`` is not given (None: the lab
    file's); ``extra_modes``: the modes the ``dsr_every_mode`` tests also run in (None: every
    other mode the target supports and the lab file loads in; only those are used anyway)."""

    name: str
    about: str
    runs: tuple[ProfileRun, ...] | None = None
    main_mode: Mode | None = None
    extra_modes: tuple[Mode, ...] | None = None
    left_out: tuple[tuple[str, str], ...] = field(default=())
    """(what, why) the profile does not judge, for the coverage table."""

    def run_for(self, scenario: str, mode: Mode | None, *, extra: bool) -> ProfileRun | None:
        """The run standing in for the suites' ``scenario`` on a platform of ``mode`` (``extra``:
        one of the ``dsr_every_mode`` tests' extra platforms), or None (the profile does not run
        it there). A run that names ``mode`` in its ``modes`` is chosen on any platform of that
        mode (also one ``--dsr-mode`` asked for); otherwise the main run, on a main platform. A
        full profile has no runs: None."""
        runs = [r for r in self.runs or () if scenario in r.judges]
        for run in runs:
            if mode in run.modes:
                return run
        if extra:
            return None
        return next((run for run in runs if not run.modes), None)

    def selects(
        self, scenario: str | None, mode: Mode | None, ids: list[str], *, extra: bool
    ) -> bool:
        """Whether a test judging ``ids`` on ``scenario`` (None: a test of no scenario) on a
        platform of ``mode`` is kept: always in a full profile and for a test of no scenario
        (the plugin deselects a *lab* test of none: nothing says which run stands in for it);
        otherwise when a run stands in for the scenario there and judges one of ``ids``."""
        if self.runs is None or scenario is None:
            return True
        run = self.run_for(scenario, mode, extra=extra)
        return run is not None and any(i in run.judges[scenario] for i in ids)

    def variant(self, scenario: str, mode: Mode | None, *, extra: bool) -> Scenario:
        """The scenario that runs when a test asks for the suites' ``scenario``: its profile
        run's (whose name may differ: one run can stand in for several), or SCENARIOS' own.
        KeyError for a name neither knows."""
        run = self.run_for(scenario, mode, extra=extra)
        return run.scenario if run is not None else SCENARIOS[scenario]


STEADY_RW = ("RW-1", "RW-2", "RW-3", "RW-4", "RW-5", "RW-6", "RW-7", "RW-8")
"""The RW requirements (RW-7 is a SHOULD, judged only at --level SHOULD or MAY)."""

FULL = Profile("full", "every scenario, every mode the target supports: the nightly gate")

QUICK = Profile(
    "quick",
    "a pull-request gate: two short runs, one in server-nat, one in gateway-nat",
    runs=(
        ProfileRun(
            GATE,
            judges={
                # Not DP-1: the hostile packets to a MUX's own address are answered by the
                # MUX, across its link (judged in gateway-nat instead).
                "steady": (*STEADY_RW, "AF-1", "AF-2", "AF-4"),
                "scale": ("SC-1", "SC-3", "SC-4"),
                "hostile": ("RB-1", "RB-2", "RB-4"),
            },
            mutants=(
                "hash-no-sport",
                "outer-tos-zero",
                "no-conn-table",
                "syn-skips-conn-table",
                "icmp-outer-hash",
                "outer-csum-missing",
                "in-place-table",
                "nat-no-pseudo-hdr",
                "udp-zero-csum-lost",
                "nat-svc-no-proto",
                "decap-any-source",
                # Both by SC-4 (measured, seeds 1 and 2): the probes are bare SYNs at ~20 k/s,
                # so unbounded inserts pin each probed tuple to the drained server; a modulo
                # hash sends tuples to three servers around the making active again.
                "syn-evicts-established",
                "modulo-hash",
            ),
        ),
        ProfileRun(
            STEADY_KILL,
            judges={
                "steady": (*STEADY_RW, "DP-1", "AF-1", "AF-2", "AF-4"),
                "mux-kill": ("MF-1",),
            },
            modes=("gateway-nat",),
            mutants=("gateway-no-l4-csum", "per-mux-hash-seed"),
        ),
    ),
    main_mode="server-nat",
    extra_modes=("gateway-nat",),
    left_out=(
        ("MF-2..MF-4, mux-hang", "their grace (15 s) and hold timer outlast a short run"),
        ("syn-flood, flood-scale (SF-1..SF-4)", "the SF requirements judge floods of 10 s"),
        ("scale's removal and re-adding", "two more probed changes: nightly"),
        ("SC-2, AF-3, DP-2, RB-3 (SHOULD)", "too few flows or probes in a short run"),
        ("DP-1 in server-nat", "the MUXes answer the hostile packets to their own address"),
        ("scale-mux-loss (SC-5, a MAY)", "nightly"),
        ("encap mode", "server-nat still encapsulates (every MUX mutant shows there)"),
        ("nat-wrong-vip", "needs VIPs sharing a server port (labs/multi-mux-nat.yaml)"),
        ("v6-nat-csum-low32", "an IPv6 mutant: the quick runs are IPv4 only"),
        ("v6-hash-low32", "an IPv6 path: the gate runs IPv4 only until runs are per family"),
        ("v6-outer-plen", "an IPv6 path: the gate runs IPv4 only until runs are per family"),
        ("v6-ptb-outer", "an IPv6 path: the gate runs IPv4 only until runs are per family"),
    ),
)
"""The pull-request gate. Its main platform is server-nat (the MUXes still encapsulate, and the
servers' NAT rewrites replies), where one run (``gate``) stands in for the steady, scale and
hostile scenarios; the steady tests also run in gateway-nat, on the short steady mix."""

PROFILES: dict[str, Profile] = {p.name: p for p in (FULL, QUICK)}
"""The profiles by name (``dsrconform run --profile``)."""


def get_profile(name: str | None) -> Profile:
    """The profile named ``name`` (None: ``full``); KeyError for an unknown one."""
    return PROFILES[name or "full"]


def coverage_table(profile: Profile, modes: Collection[str | None] | None = None) -> list[str]:
    """Lines saying what ``profile`` runs, in which modes, what each run judges and which
    mutants it is meant to catch, and what it leaves out (for a full profile: one line). With
    ``modes`` (the run's platforms' modes), a run none of whose modes is there is marked NOT RUN
    (a lab file without a gateway, or ``--dsr-mode``)."""
    if profile.runs is None:
        return [f"profile {profile.name}: {profile.about}"]
    main = profile.main_mode or "the lab file's mode"
    lines = [f"profile {profile.name}: {profile.about}"]
    for run in profile.runs:
        where = ", ".join(run.modes) if run.modes else f"{main} (main platform)"
        absent = modes is not None and bool(run.modes) and not set(run.modes) & set(modes)
        note = " -- NOT RUN here: no platform in its mode" if absent else ""
        lines.append(f"  run {run.scenario.name} in {where}{note}: {run.scenario.description}")
        for scenario, ids in run.judges.items():
            lines.append(f"    for {scenario} tests: {', '.join(ids)}")
        if run.mutants:
            lines.append(f"    mutants meant to be caught: {', '.join(run.mutants)}")
    lines.append("  left to the full run:")
    lines += [f"    {what}: {why}" for what, why in profile.left_out]
    return lines
