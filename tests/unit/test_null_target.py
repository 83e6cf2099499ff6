"""The built-in ``null`` target (deploys nothing) and naming a target as ``module:Class``."""

from __future__ import annotations

import tomllib
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from dsrconform.errors import ConfigError
from dsrconform.target import Target, check_mutant, load_target
from dsrconform.targets.null import NullDeployment, NullTarget
from dsrconform.topofile import load_topology
from dsrconform.topology import MODES
from tests.unit.labfiles import BASIC

REF = "dsrconform.targets.null:NullTarget"


def test_registered_as_null_in_pyproject() -> None:
    meta = tomllib.loads((BASIC.parents[1] / "pyproject.toml").read_text())
    assert meta["project"]["entry-points"]["dsrconform.targets"]["null"] == REF


def test_load_target_by_module_and_class() -> None:
    target = load_target(REF)
    assert isinstance(target, NullTarget) and isinstance(target, Target)
    assert (target.name, target.mutant, target.modes) == ("null", None, MODES)
    assert list(target.mutants()) == []
    assert check_mutant(REF, None) is None
    with pytest.raises(ConfigError, match=r"unknown mutant 'm1' of target '.*'; its .*: none"):
        check_mutant(REF, "m1")
    with pytest.raises(ConfigError, match="unknown mutant 'm1' of target 'null'; it has none"):
        NullTarget(mutant="m1")
    with pytest.raises(ConfigError, match="takes no options"):
        load_target(REF, options={"gateway": "naive"})


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("no_such_module_xyz:Target", "no module 'no_such_module_xyz'; fix: put the directory"),
        ("dsrconform.targets.null:Nope", "module 'dsrconform.targets.null' has no 'Nope'"),
        ("dsrconform.targets.null:", "or a class as module:Class"),
        (":NullTarget", "or a class as module:Class"),
        ("dsrconform.target:ENTRY_POINT_GROUP", "'ENTRY_POINT_GROUP' of module .* is no class"),
        ("types:SimpleNamespace", "does not implement dsrconform.target.Target"),
        ("no-such-target", "unknown target 'no-such-target'; registered targets: .*module:Class"),
    ],
)
def test_load_target_refuses_what_names_no_target(name: str, why: str) -> None:
    with pytest.raises(ConfigError, match=why):
        load_target(name)


def deployed(lab_text: str | None = None, tmp: Path | None = None) -> NullDeployment:
    path = BASIC
    if lab_text is not None and tmp is not None:
        path = tmp / "lab.yaml"
        path.write_text(lab_text)
    lab: Any = SimpleNamespace(topology=load_topology(path), name="basic")
    return NullTarget().deploy(lab)


def test_deploys_nothing() -> None:
    dep = deployed()
    assert dep.wait_ready(30.0) == 0.0
    assert dep.counters() == {}
    assert dep.status() == {"deployed": "nothing (the null target)"}
    dep.restart("mux1")
    dep.close()
    with NullTarget().mux_for_bench(
        netns="x",
        ifname="y",
        mux_addr="198.18.10.1",
        next_hop_mac="00:00:00:00:00:01",
        vip=Any,  # type: ignore[arg-type]
        backends=[],
    ):
        pass


def test_backend_sets_kept_in_memory() -> None:
    dep = deployed()
    assert dep.backends("web") == {"active": ["server1", "server2", "server3"], "draining": []}
    dep.set_backends("web", ["server3", "server1", "server3"], draining=["server2"])
    assert dep.backends("web") == {"active": ["server1", "server3"], "draining": ["server2"]}
    assert dep.backends("echo")["active"] == ["server1", "server2", "server3"]  # untouched


def test_set_backends_refuses_as_every_target_does(tmp_path: Path) -> None:
    web = "  - {name: web, vip: 198.19.0.10, port: 80, proto: tcp, app_port: 8080}\n"
    text = BASIC.read_text()
    assert web in text, "basic.yaml changed"
    dep = deployed(text.replace(web, web[:-2] + ", servers: [server1, server2]}\n"), tmp_path)
    cases = [
        (("nope", ["server1"]), {}, "unknown service 'nope'; services of lab basic: web, echo"),
        (("web", ["server9"]), {}, "no server 'server9' in lab basic; servers: server1"),
        (("web", ["server3"]), {}, "server 'server3' does not run its application"),
        (("web", []), {}, "an empty active set would leave VIP 198.19.0.10:80"),
        (("web", ["server1"]), {"draining": ["server1"]}, "server1 listed as both active"),
        (("web", "server1"), {}, "must be a list of server names, not the string"),
    ]
    for args, kw, why in cases:
        with pytest.raises(ConfigError, match=why):
            dep.set_backends(*args, **kw)  # type: ignore[arg-type]
        assert dep.backends("web") == {"active": ["server1", "server2"], "draining": []}
    with pytest.raises(ConfigError, match="unknown service 'nope'"):
        dep.backends("nope")
