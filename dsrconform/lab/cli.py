"""``dsrconform lab up | status | exec | down``.

``lab up`` returns once the lab is ready (BGP converged, applications listening) and leaves it
running: the BPF programs stay attached to the lab's interfaces and the daemons run in the lab's
namespaces until ``lab down`` (the lab is *detached*: it outlives ``lab up``). ``lab down --all``
removes every lab whose owner process is gone (detached labs, what crashed runs left behind,
throwaway namespaces of dead processes) and lists, without touching them, the labs whose owner
still runs (a pytest session's, another ``dsrconform run``'s); ``--force`` removes those too.
``lab down`` returns once the kernel has freed the lab's BPF programs and maps.

``lab up`` leaves a lab controller running that owns the lab (:mod:`dsrconform.lab.controller`):
``lab fault`` and ``lab backends`` (:mod:`dsrconform.lab.faultcli`) act on the lab through it from
any shell, and ``lab down`` (also ``--all``) asks it to tear the lab down.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from typing import Any

from dsrconform.errors import ConfigError
from dsrconform.lab import registry
from dsrconform.runopts import add_environment_options
from dsrconform.topology import MODES


def add_parser(sub: Any) -> None:
    lab = sub.add_parser("lab", help="bring labs up, inspect them, run commands in them, tear down")
    lab_sub = lab.add_subparsers(dest="lab", metavar="ACTION", required=True)

    p = lab_sub.add_parser("up", help="bring a topology up with a target deployed (needs root)")
    p.add_argument("file", metavar="FILE", help="topology file, e.g. labs/basic.yaml")
    p.add_argument("--backend", choices=("netns", "docker"), default="netns")
    p.add_argument("--mode", choices=MODES, default=None, help="override the file's mode")
    p.add_argument("--name", default=None, help="lab name (default: the file's)")
    p.add_argument("--target", default="reference", metavar="NAME")
    p.add_argument("--mutant", default=None, metavar="NAME", help="deploy a mutant instead")
    add_environment_options(p)
    p.add_argument("--timeout", type=float, default=60.0, metavar="S", help="readiness deadline")
    p.set_defaults(handler=_up)

    p = lab_sub.add_parser("validate", help="check a topology file and summarize it (no root)")
    p.add_argument("file", metavar="FILE", help="topology file, e.g. labs/basic.yaml")
    p.add_argument("--mode", choices=MODES, default=None, help="check it in this mode instead")
    p.set_defaults(handler=_validate)

    p = lab_sub.add_parser("status", help="nodes, links, routes, BGP state, programs")
    p.add_argument("name", nargs="?", default=None, help="lab name (default: every lab)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=_status)

    p = lab_sub.add_parser("exec", help="run a command inside a node: lab exec NODE -- CMD...")
    p.add_argument("node", metavar="NODE")
    p.add_argument("cmd", nargs=argparse.REMAINDER, metavar="CMD")
    p.add_argument("--name", default=None, help="lab name (needed when several are up)")
    p.set_defaults(handler=_exec)

    p = lab_sub.add_parser(
        "down", help="tear a lab down (--all: every lab whose owner is gone, and every leftover)"
    )
    p.add_argument("name", nargs="?", default=None)
    p.add_argument("--all", action="store_true")
    p.add_argument(
        "--force", action="store_true", help="with --all: also the labs whose owner still runs"
    )
    p.set_defaults(handler=_down)

    from dsrconform.lab import faultcli

    faultcli.add_parsers(lab_sub)


def _validate(args: argparse.Namespace) -> int:
    """Parse and check FILE as ``lab up`` would before creating anything; create nothing."""
    from collections import Counter

    from dsrconform.topoaddrs import endpoint
    from dsrconform.topofile import load_topology

    topo = load_topology(args.file, mode=args.mode)

    def n(count: int, noun: str, plural: str = "") -> str:
        return f"{count} {noun if count == 1 else plural or noun + 's'}"

    roles: Counter[str] = Counter(node.role for node in topo.nodes.values())
    order = ("client", "router", "mux", "server", "gateway")
    per_role = ", ".join(f"{roles[r]} {r}" for r in order if roles[r])
    print(
        f"{args.file}: valid: lab {topo.name}, mode {topo.mode}, "
        f"{n(len(topo.nodes), 'node')} ({per_role}), {n(len(topo.links), 'link')}, "
        f"{n(len(topo.segments), 'segment')}, {n(len(topo.services), 'service')}"
    )
    for svc in topo.services:
        muxes = len(svc.muxes) if svc.muxes is not None else roles["mux"]
        app = f" (app port {svc.server_port})" if topo.mode != "encap" else ""
        if svc.backend_family != svc.family:
            app += f" (backends {svc.backend_family})"
        print(
            f"  {svc.name}: {svc.proto} {endpoint(svc.vip, svc.port)}{app}, "
            f"{n(len(topo.servers_of(svc)), 'server')}, {n(muxes, 'MUX', 'MUXes')}"
        )
    return 0


def _up(args: argparse.Namespace) -> int:
    """Check FILE and the names, then start the lab's controller, which brings the lab up, owns
    it and serves ``lab fault`` / ``lab backends`` (:func:`dsrconform.lab.faultcli.launch`)."""
    from dsrconform.applicability import refuse_unsupported
    from dsrconform.lab import faultcli
    from dsrconform.target import check_mutant, parse_target_options
    from dsrconform.topofile import load_topology

    options = parse_target_options(args.target_opt)
    check_mutant(args.target, args.mutant, options=options)  # before anything exists
    topo = load_topology(args.file, mode=args.mode)
    refuse_unsupported(args.target, topo, options)  # a mode the target lacks: before the lab
    name = args.name if args.name is not None else topo.name or "lab"
    if not registry.LAB_NAME_OK(name):
        raise ConfigError(
            f"lab name {name!r}: fix: 1-12 lower-case letters and digits, a letter first"
        )
    up = faultcli.launch(
        args.file,
        name=name,
        backend=args.backend,
        mode=args.mode,
        target=args.target,
        mutant=args.mutant,
        timeout=args.timeout,
        target_opts=args.target_opt,
        server_command=args.server_command,
    )
    print(
        f"lab {name} is up ({up['took']:.1f} s; BGP converged {up['ready_seconds']:.1f} s after "
        f"deploy), mode {up['mode']}, target {up['target']}"
        + (f" (mutant {up['mutant']})" if up["mutant"] else "")
    )
    for svc in topo.services:
        print(f"  {svc.name}: {svc.proto} {svc.vip}:{svc.port}")
    web = next((s for s in topo.services if s.proto == "tcp"), None)
    client = topo.of_role("client")[0]
    if web:
        print(f"try: dsrconform lab exec {client} -- curl -si http://{web.vip}:{web.port}/id")
    print(
        f"faults: dsrconform lab fault {name} NODE ACTION (controller pid {up['pid']}, log "
        f"{up['log']})"
    )
    print(f"tear down: dsrconform lab down {name}")
    return 0


def _running(name: str | None) -> list[str]:
    """The labs that are up (have namespaces; a record alone is what a crash left), or just
    ``name``'s (a ConfigError naming those that are up when it is not)."""
    names = registry.labs_up()
    if name is not None:
        if name not in names:
            raise ConfigError(f"no lab {name!r} is up (up: {', '.join(names) or 'none'})")
        return [name]
    return names


def _ip_json(ns: str, *args: str) -> Any:
    res = subprocess.run(["ip", "-j", "-n", ns, *args], capture_output=True, text=True)
    return json.loads(res.stdout or "[]") if res.returncode == 0 else []


def _tc_json(ns: str, ifname: str, hook: str) -> list[Any]:
    res = subprocess.run(["tc", "-j", "-n", ns, "filter", "show", "dev", ifname, hook],
                         capture_output=True, text=True)  # fmt: skip
    try:
        return list(json.loads(res.stdout or "[]")) if res.returncode == 0 else []
    except ValueError:
        return []


def lab_status(name: str) -> dict[str, Any]:
    """What is running for lab ``name``, probed from the outside (no Lab object needed)."""
    rec = registry.LabRecord.load(name)
    nss = registry.lab_namespaces(name)
    procs = registry.pids_in_namespaces(nss)
    nodes: dict[str, Any] = {}
    for ns in nss:
        node = ns.split(".", 1)[1]
        links = []
        for link in _ip_json(ns, "addr", "show"):
            if link.get("ifname") == "lo":
                continue
            links.append({
                "ifname": link.get("ifname"), "state": link.get("operstate"),
                "mtu": link.get("mtu"),
                "addresses": [f"{a['local']}/{a['prefixlen']}" for a in link.get("addr_info", [])],
            })  # fmt: skip
        xdp = [
            {"ifname": lk["ifname"], "xdp_prog": lk["xdp"].get("prog", {}).get("id")}
            for lk in _ip_json(ns, "link", "show") if "xdp" in lk
        ]  # fmt: skip
        tc = []
        for lk in links:
            for hook in ("ingress", "egress"):
                for f in _tc_json(ns, lk["ifname"], hook):
                    prog = f.get("options", {}).get("prog", {})
                    if prog:
                        tc.append({"ifname": lk["ifname"], "hook": hook, "tc_prog": prog.get("id"),
                                   "name": prog.get("name")})  # fmt: skip
        nodes[node] = {
            "netns": ns, "processes": sorted(p for p, n in procs.items() if n == ns),
            "links": links, "xdp": xdp, "tc": tc, "routes": _ip_json(ns, "route", "show"),
        }  # fmt: skip
    bgp: dict[str, str] = {}
    ldir = registry.lab_dir(name)
    for sock in sorted(ldir.glob("bird-*.ctl")) if ldir.is_dir() else []:
        node = sock.stem.removeprefix("bird-")
        try:
            res = subprocess.run(
                ["birdc", "-s", str(sock), "show", "protocols"],
                capture_output=True,
                text=True,
                timeout=5,
            )
            bgp[node] = res.stdout.strip()
        except subprocess.TimeoutExpired:  # a paused node's BIRD (lab fault NODE pause)
            bgp[node] = "BIRD did not answer within 5 s (is the node paused?)"
    state = registry.owner_state(rec)
    owner = {"state": state, "text": registry.owner_text(rec, state)}
    from dsrconform.lab.faultcli import status_of

    return {
        "name": name,
        "record": rec.__dict__ if rec else None,
        "nodes": nodes,
        "bgp": bgp,
        "owner": owner,
        "controller": status_of(name),
    }


def _status(args: argparse.Namespace) -> int:
    out = [lab_status(n) for n in _running(args.name)]
    if args.json:
        print(json.dumps(out, indent=2, sort_keys=True))
        return 0
    if not out:
        print("no lab is up")
    for st in out:
        rec = st["record"] or {}
        print(
            f"lab {st['name']}: backend {rec.get('backend', '?')}, mode {rec.get('mode', '?')}, "
            f"target {rec.get('target', '?')}, from {rec.get('topology', '?')}; "
            f"{st['owner']['text']}"
        )
        for node, info in st["nodes"].items():
            addrs = ", ".join(
                f"{lk['ifname']} {' '.join(lk['addresses'])}"
                for lk in info["links"]
                if lk["addresses"]
            )
            xdp = "".join(f" [xdp {x['ifname']}]" for x in info["xdp"])
            xdp += "".join(f" [tc {t['hook']} {t['ifname']} {t['name']}]" for t in info["tc"])
            print(f"  {node:10} {len(info['processes'])} proc  {addrs}{xdp}")
        _print_controller(st["name"], st.get("controller"))
        for node, table in st["bgp"].items():
            print(f"  bgp on {node}:")
            for line in table.splitlines()[1:]:
                if " BGP " in line:
                    print(f"    {line}")
    return 0


def _print_controller(name: str, ctl: dict[str, Any] | None) -> None:
    """The lab controller's line in ``lab status``: faults in force, with how to lift them."""
    if ctl is None:
        return
    if "error" in ctl:
        print(f"  controller: {ctl['error']}")
        return
    held = [f"{what} {', '.join(ctl[what])}" for what in ("killed", "paused") if ctl.get(what)]
    print(f"  controller pid {ctl['pid']}{': ' + '; '.join(held) if held else ''}")
    for f in ctl.get("faults", []):
        print(
            f"    {f['kind']} {f['id']}: {f['description']} (lift: dsrconform lab fault {name} "
            f"{f['node']} undo {f['id']})"
        )


def _exec(args: argparse.Namespace) -> int:
    cmd = list(args.cmd)
    if cmd[:1] == ["--name"] and len(cmd) > 1:  # `lab exec NODE --name LAB -- CMD` also works
        args.name, cmd = cmd[1], cmd[2:]
    cmd = cmd[1:] if cmd[:1] == ["--"] else cmd
    if not cmd:
        raise ConfigError("nothing to run; usage: dsrconform lab exec NODE -- CMD [ARGS...]")
    labs = _running(args.name)
    if not labs:
        raise ConfigError("no lab is up; fix: `dsrconform lab up labs/basic.yaml` first")
    if len(labs) > 1:
        raise ConfigError(
            f"several labs are up ({', '.join(labs)}): which one? fix: dsrconform lab exec "
            f"--name LAB {args.node} -- {' '.join(cmd)}  (LAB one of {', '.join(labs)})"
        )
    ns = registry.ns_name(labs[0], args.node)
    if not (registry.NETNS_DIR / ns).exists():
        nodes = [n.split(".", 1)[1] for n in registry.lab_namespaces(labs[0])]
        raise ConfigError(f"lab {labs[0]} has no node {args.node!r}; nodes: {', '.join(nodes)}")
    from dsrconform.lab.lab import make_backend

    rec = registry.LabRecord.load(labs[0])
    argv = make_backend(rec.backend if rec else "netns", labs[0]).exec_argv(args.node, cmd)
    sys.stdout.flush()
    os.execvp(argv[0], argv)
    return 127  # not reached


def _down(args: argparse.Namespace) -> int:
    if args.all == (args.name is not None):
        raise ConfigError("give a lab name or --all (not both)")
    if args.force and not args.all:
        raise ConfigError("--force goes with --all (a lab named is removed whoever owns it)")
    from dsrconform.lab import faultcli

    removed: dict[str, list[str]] = {}
    if args.all:
        # `lab up`'s labs: their owner, the controller, runs on purpose; ask it to tear down.
        for lab in sorted(set(registry.labs_up()) | set(registry.recorded_labs())):
            if registry.LAB_NAME_OK(lab):
                for k, v in (faultcli.down(lab) or {}).items():
                    removed.setdefault(k, []).extend(v)
        rest, skipped = registry.reap_all(force=args.force)
        for k, v in rest.items():
            removed.setdefault(k, []).extend(v)
        for lab, why in skipped.items():
            print(f"skipped lab {lab}: {why}; `dsrconform lab down --all --force` removes it")
    else:
        _known(args.name)
        removed = faultcli.down(args.name) or registry.reap(args.name)
    what = ", ".join(f"{len(v)} {k}" for k, v in removed.items() if v) or "nothing"
    print(f"removed {what}")
    return 0


def _known(name: str) -> None:
    """A ConfigError, naming the labs there are, unless lab ``name`` has something on the
    machine (namespaces, a record, containers)."""
    registry.check_name(name)
    if registry.lab_namespaces(name) or registry.LabRecord.load(name) is not None:
        return
    if registry.lab_containers(name):  # a docker lab's leftovers without a namespace
        return
    labs = sorted(set(registry.labs_up()) | set(registry.recorded_labs()))
    raise ConfigError(
        f"no lab {name!r} to tear down (labs: {', '.join(labs) or 'none'}); fix: "
        "`dsrconform lab status` lists them, `dsrconform lab down --all` removes every lab "
        "whose owner is gone"
    )
