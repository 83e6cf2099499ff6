"""``dsrconform target check NAME`` and ``target list``: an adapter checked without a lab.

``target check`` loads the adapter (a registered name or ``module:Class``) and checks it against
the SDK's contract (:mod:`dsrconform.target`), printing one line per check, ``PASS`` or ``FAIL``
with the fix (``SKIP`` for what could not be checked, ``INFO`` for optional capabilities):

- the constructor takes ``mutant=`` and ``options=`` and builds the correct stack;
- every :class:`~dsrconform.target.Target` member is there, of the right kind (attribute or
  method), each one missing named;
- every :class:`~dsrconform.target.Deployment` member on the class ``deploy`` is annotated to
  return (SKIP when the annotation does not resolve to a class);
- capabilities: ``modes`` a non-empty subset of :data:`dsrconform.topology.MODES`, ``families`` a
  non-empty subset of :data:`dsrconform.target.FAMILIES`; ``encapsulations``, when declared
  (optional), a non-empty subset of :data:`dsrconform.target.ENCAPSULATIONS` (INFO when not:
  the default, IPIP);
- ``mutants()``: a list of :class:`~dsrconform.target.MutantInfo` with unique names, a
  description, a component and requirement IDs of the catalogue; each one constructs;
- an unknown mutant and an unknown option are refused with ConfigError.

Exit 0: every check passed; 1: one failed; 2: the target is unknown (not registered, no such
module or class).
"""

from __future__ import annotations

import argparse
import ast
import importlib
import importlib.util
import inspect
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

from dsrconform.errors import ConfigError
from dsrconform.target import (
    CAPABILITIES,
    DEFAULT_ENCAPSULATIONS,
    DEPLOYMENT_MEMBERS,
    GUIDE,
    INIT,
    TARGET_MEMBERS,
    AgentRestart,
    Member,
    MutantInfo,
    MuxBench,
    accepts_keyword,
    capability_problem,
    capability_values,
    member_problems,
    resolve_target,
)

Outcome = Literal["PASS", "FAIL", "SKIP", "INFO"]
UNKNOWN_MUTANT = "dsrconform-check-no-such-mutant"
UNKNOWN_OPTION = "dsrconform-check-no-such-option"


@dataclass(frozen=True)
class Check:
    outcome: Outcome
    what: str
    detail: str
    fix: str = ""

    def line(self) -> str:
        fix = f"; fix: {self.fix}" if self.fix and self.outcome == "FAIL" else ""
        return f"{self.outcome:<5} {self.what}: {self.detail}{fix}"


def _ok(what: str, detail: str) -> Check:
    return Check("PASS", what, detail)


def _fail(what: str, detail: str, fix: str) -> Check:
    return Check("FAIL", what, detail, fix)


def _error(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}"


def _members(prefix: str, obj: object, members: tuple[Member, ...]) -> Iterator[Check]:
    for m in members:
        problems = member_problems(obj, (m,))
        if problems:
            yield _fail(f"{prefix}.{m.name}", problems[0], f"define {m.name}: {m.what} ({GUIDE})")
        else:
            yield _ok(f"{prefix}.{m.name}", m.kind)


def _refused(build: Callable[[], object], what: str, given: str, fix: str) -> Check:
    try:
        build()
    except ConfigError:
        return _ok(what, "refused with ConfigError")
    except Exception as e:
        return _fail(what, f"{given} raised {_error(e)}, not ConfigError", fix)
    return _fail(what, f"{given} was accepted", fix)


def check_target(name: str) -> list[Check]:
    """Every check of target ``name``. ConfigError only when the target is unknown."""
    cls, where = resolve_target(name)
    out = [_ok("adapter", f"{name} is {where}")]
    takes_mutant, takes_options = accepts_keyword(cls, "mutant"), accepts_keyword(cls, "options")
    init_fix = INIT
    if takes_mutant is None:
        out.append(Check("SKIP", "constructor", "its signature cannot be read"))
    elif takes_mutant and takes_options:
        out.append(_ok("constructor", "takes mutant= and options="))
    else:
        pairs = (("mutant", takes_mutant), ("options", takes_options))
        lacks = " and ".join(k for k, t in pairs if not t)
        out.append(_fail("constructor", f"does not take {lacks}=", init_fix))
    try:
        target = cls(mutant=None, options=None) if takes_options is not False else cls(mutant=None)
    except Exception as e:
        out.append(_fail("correct stack", f"cls(mutant=None) raised {_error(e)}", init_fix))
        out += _members("Target", cls, TARGET_MEMBERS)  # on the class: what can be seen there
        return out
    out.append(_ok("correct stack", "constructs with mutant=None"))
    out += _members("Target", target, TARGET_MEMBERS)
    out += _capabilities(target)
    out += _mutants(cls, target)
    out.append(
        _refused(
            lambda: cls(mutant=UNKNOWN_MUTANT),
            "unknown mutant",
            f"mutant={UNKNOWN_MUTANT!r}",
            "raise dsrconform.errors.ConfigError naming the known mutants in the constructor",
        )
    )
    if takes_options:
        out.append(
            _refused(
                lambda: cls(mutant=None, options={UNKNOWN_OPTION: "x"}),
                "unknown option",
                f"options={{{UNKNOWN_OPTION!r}: 'x'}}",
                "raise dsrconform.errors.ConfigError naming the known options",
            )
        )
    out += _deployment(cls)
    bench = "yes" if isinstance(target, MuxBench) else "no (`bench mux` refuses it)"
    out.append(Check("INFO", "optional MuxBench (mux_for_bench)", bench))
    return out


def _capabilities(target: object) -> Iterator[Check]:
    name = getattr(target, "name", None)
    if name is not None:
        if isinstance(name, str) and name:
            yield _ok("name", repr(name))
        else:
            yield _fail("name", f"{name!r} is not a non-empty str", 'name = "mystack"')
    for attr in CAPABILITIES:  # the checks load_target makes (dsrconform.target)
        value = getattr(target, attr, None)
        if value is None and attr == "encapsulations":
            yield Check(
                "INFO",
                "optional capability encapsulations",
                f"not declared: {', '.join(DEFAULT_ENCAPSULATIONS)} assumed",
            )
            continue
        if value is None or callable(value):
            continue  # reported by the member checks
        problem = capability_problem(attr, value)
        if problem is not None:
            allowed = ", ".join(capability_values(attr))
            yield _fail(f"capability {attr}", problem, f"a tuple of some of {allowed}")
        else:
            yield _ok(f"capability {attr}", ", ".join(value))


def _mutants(cls: Any, target: object) -> Iterator[Check]:
    from dsrconform.spec import BY_ID

    lister = getattr(target, "mutants", None)
    if not callable(lister):
        return  # reported by the member checks
    try:
        infos = list(lister())
    except Exception as e:
        yield _fail("mutants()", f"raised {_error(e)}", "return a list of MutantInfo ([] if none)")
        return
    yield _ok("mutants()", f"{len(infos)} mutant(s)")
    seen: set[str] = set()
    for i, info in enumerate(infos):
        if not isinstance(info, MutantInfo):
            yield _fail(
                f"mutant #{i}",
                f"a {type(info).__name__}, not a MutantInfo",
                "return dsrconform.target.MutantInfo(...)",
            )
            continue
        what = f"mutant {info.name!r}"
        problems = []
        if not info.name or info.name in seen:
            problems.append("an empty or repeated name")
        seen.add(info.name)
        if not info.description or not info.component:
            problems.append("an empty description or component")
        if not info.requirements:
            problems.append("no requirement IDs")
        unknown = [r for r in info.requirements if r not in BY_ID]
        if unknown:
            problems.append(f"requirement IDs not in the catalogue: {', '.join(unknown)}")
        if problems:
            fix = "unique name, description, component, IDs of `dsrconform spec`"
            yield _fail(what, "; ".join(problems), fix)
            continue
        try:
            built = cls(mutant=info.name)
        except Exception as e:
            yield _fail(what, f"cls(mutant={info.name!r}) raised {_error(e)}", "accept it")
            continue
        if getattr(built, "mutant", None) != info.name:
            got = getattr(built, "mutant", None)
            yield _fail(what, f"built with .mutant == {got!r}", "set self.mutant = mutant")
            continue
        yield _ok(what, f"constructs; violates {', '.join(info.requirements)}")


def deployment_class(cls: Any) -> tuple[Any, str]:
    """(the class ``cls.deploy`` is annotated to return, or None; why it could not be found).
    A string annotation is resolved in the adapter's module, importing a name the module imports
    only for type checking (``if TYPE_CHECKING: from x import Y``)."""
    fn = getattr(cls, "deploy", None)
    ann = getattr(fn, "__annotations__", {}).get("return") if fn is not None else None
    if ann is None:
        return None, "deploy has no return annotation"
    if isinstance(ann, str):
        module = sys.modules.get(getattr(fn, "__module__", ""), None)
        if module is None:
            return None, f"deploy's module is not loaded (annotation {ann!r})"
        try:
            ann = _resolve_annotation(ann, module)
        except Exception as e:
            return None, f"deploy's return annotation {ann!r} does not resolve ({_error(e)})"
    if not inspect.isclass(ann):
        return None, f"deploy's return annotation {ann!r} is not a class"
    if getattr(ann, "_is_protocol", False):
        return None, f"deploy is annotated to return the protocol {ann.__name__}, not a class"
    return ann, ""


def _resolve_annotation(text: str, module: Any) -> Any:
    namespace = dict(vars(module))
    wanted = {n.id for n in ast.walk(ast.parse(text, mode="eval")) if isinstance(n, ast.Name)}
    wanted -= namespace.keys()
    if wanted:
        tree = ast.parse(inspect.getsource(module))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                base = "." * node.level + (node.module or "")
                source = importlib.util.resolve_name(base, module.__package__ or "")
                for alias in node.names:
                    if (alias.asname or alias.name) in wanted:
                        mod = importlib.import_module(source)
                        namespace[alias.asname or alias.name] = getattr(mod, alias.name)
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    key = alias.asname or alias.name.split(".")[0]
                    if key in wanted:  # `import a.b as k` binds a.b; `import a.b` binds a
                        imported = importlib.import_module(alias.name)
                        namespace[key] = imported if alias.asname else importlib.import_module(key)
    return eval(text, namespace)  # an annotation of the adapter's own source, as typing does


def _deployment(cls: Any) -> Iterator[Check]:
    dep, why = deployment_class(cls)
    if dep is None:
        yield Check(
            "SKIP",
            "Deployment",
            f"could not be checked: {why}; annotate deploy with the deployment class",
        )
        return
    yield from _members(f"Deployment ({dep.__name__})", dep, DEPLOYMENT_MEMBERS)
    agent = "yes" if isinstance(dep, type) and _has_methods(dep, AgentRestart) else "no"
    yield Check("INFO", "optional AgentRestart (restart_agent)", agent)


def _has_methods(cls: type, proto: Any) -> bool:
    names = [n for n in vars(proto) if not n.startswith("_")]
    return all(callable(getattr(cls, n, None)) for n in names)


# --- the command line -------------------------------------------------------------------------


def _cmd_check(args: argparse.Namespace) -> int:
    checks = check_target(args.name)
    for c in checks:
        print(c.line())
    failed = sum(c.outcome == "FAIL" for c in checks)
    passed = sum(c.outcome == "PASS" for c in checks)
    see = f"; see {GUIDE}" if failed else ""
    print(f"target {args.name}: {passed} passed, {failed} failed{see}")
    return 1 if failed else 0


def _cmd_list(args: argparse.Namespace) -> int:
    from importlib.metadata import entry_points

    from dsrconform.target import ENTRY_POINT_GROUP, load_target, target_version

    eps = sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name)
    if not eps:
        print("no target registered (is the package installed? `pip install -e .`)")
    for ep in eps:
        try:
            t = load_target(ep.name)
            about = f"modes {', '.join(t.modes)}; families {', '.join(t.families)}"
        except Exception as e:
            about = f"broken: {_error(e)[:100]} (`dsrconform target check {ep.name}`)"
        print(f"{ep.name:<12} {ep.value}  {target_version(ep.name) or '?'}  {about}")
    print("an adapter that is not installed: --target module:Class (on PYTHONPATH)")
    return 0


def add_parser(sub: Any) -> None:
    p = sub.add_parser("target", help="target adapters: list them, check one without a lab")
    tsub = p.add_subparsers(dest="target_command", metavar="ACTION", required=True)
    c = tsub.add_parser(
        "check",
        help="check an adapter against the target protocol (no lab, no root)",
        description="Exit 0: every check passed; 1: one failed; 2: unknown target.",
    )
    c.add_argument("name", metavar="NAME", help="a registered target, or module:Class")
    c.set_defaults(handler=_cmd_check)
    c = tsub.add_parser("list", help="the registered targets, their modes and families")
    c.set_defaults(handler=_cmd_list)
