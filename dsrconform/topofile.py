"""Loading a topology file safely: from the bytes on disk to a checked
:class:`~dsrconform.topology.Topology` (the model, its fields and cross-references, is
:mod:`dsrconform.topology`).

A topology file is input that :func:`load_topology` reads before anything is created, and however
it is wrong (binary, huge, a YAML "billion laughs", ten thousand nodes) it must fail fast with one
clear error rather than take memory, minutes or pages of errors. So the file is bounded before
any of it is validated, in steps:

1. read at most :data:`MAX_FILE_BYTES` (one byte more tells it is too big without reading the
   rest); the bytes must be UTF-8 without a NUL, so a binary file is refused as such, not as bad
   YAML;
2. compose the YAML node tree (with libyaml when PyYAML is built with it), which keeps each
   value's line for the errors; :func:`_check_tree` refuses a tree deeper than
   :data:`MAX_YAML_DEPTH`, an alias that refers to its own anchor, or more than
   :data:`MAX_YAML_VALUES` values once each alias counts as what it repeats (composing shares an
   anchored node, so a few lines can stand for 10**9); a key defined twice is an error (YAML would
   silently keep the last);
3. count what scales a lab's work (:func:`_bound_problems`: ``MAX_NODES``, ``MAX_SERVERS`` and the
   other limits below), on the tree, then again on the data the safe constructor (plain data only)
   builds from it, since a merge key (``<<``) adds entries the tree shows as one; each count over
   its limit is one error with the field, the count and the limit;
4. validate the fields (an unknown key's error lists the keys its object takes, and the closest
   one), then the cross-references (:meth:`~dsrconform.topology.Topology.problems`); a file
   without ``name`` is named after its file name;
5. apply ``mode`` (``--mode``) and check the cross-references again: the file is valid in its own
   mode, so each error then is the override's doing and says so.

Every error names the file, line, field and a fix; a report prints at most
:data:`MAX_ERROR_LINES` of them, then ``... and N more errors in FILE``, so even a generated file
with thousands of mistakes gets a readable answer. The limits are generous for a lab, which runs
on one machine, and keep validation (which compares addresses, links and services with each
other) well under a second: a file at every limit validates in about half a second.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from dsrconform.configfile import _duplicate_key, _report
from dsrconform.errors import ConfigError
from dsrconform.topology import (
    LAB_NAME_RE,
    Link,
    Loc,
    Mode,
    Node,
    Segment,
    Service,
    Topology,
)

# --- limits of a topology file, checked before any of it is validated --------------------------
# A lab runs on one machine: every node is a namespace with its own processes (an application
# per server, BIRD per MUX and on the router), so these are generous for a lab yet keep a file's
# validation (which compares addresses, links and services with each other) well under a second.
# The shipped labs are far below them (labs/scale.yaml: 22 nodes, 16 servers, 2 services).
MAX_FILE_BYTES = 1 << 20  # 1 MiB; labs/*.yaml are 1-3 KB, a file at every limit ~150 KB
MAX_YAML_VALUES = 100_000  # values once anchors/aliases are expanded (a "billion laughs" bound)
MAX_YAML_DEPTH = 32  # a topology nests 5 deep
MAX_NODES = 256  # namespaces (bench lab builds up to 200 without a stack)
MAX_SERVERS = 128  # each runs the application and a server agent
MAX_ADDRESSES_PER_NODE = 64  # a client's extra source addresses (labs/basic.yaml: 7)
MAX_LINKS = 256  # veth pairs; one per pair of nodes, a star of MAX_NODES needs MAX_NODES - 1
MAX_SEGMENTS = 32  # bridges; members of one are nodes, so at most MAX_NODES
MAX_SERVICES = 64  # VIP:port/proto entries; one MUX fronting all of them must hold them (the
# reference MUX holds 64). Each service has one VIP, so this also bounds the VIPs.
MAX_BLACKHOLES = 8  # every address is checked against each black-holed network
MAX_ERROR_LINES = 20  # errors printed for one file, then "... and N more"


def load_topology(path: str | Path, *, mode: Mode | None = None) -> Topology:
    """Load and check a topology file; ``mode`` overrides the file's data-plane mode.

    The steps of :func:`dsrconform.configfile.load_model` (errors with file, line, field and a
    fix), with what a topology adds before any item is validated: the file must be UTF-8 text of
    at most :data:`MAX_FILE_BYTES`, its YAML at most :data:`MAX_YAML_VALUES` values with aliases
    expanded, and its counts within the ``MAX_*`` limits. Then the fields (an unknown key's error
    lists the allowed ones), then the cross-references; at most :data:`MAX_ERROR_LINES` errors.
    """
    p = Path(path)
    text = _read_text(p)
    tree = _compose(p, text)
    # Counted on the YAML tree, before anything is built from it, and again on the data built
    # (a merge key, <<, adds entries the tree shows as one).
    found = _bound_problems(tree)
    data = _construct(p, tree) if not found else {}
    found = found or _bound_problems(data)
    if found:
        raise ConfigError(_capped_report(p, tree, found))
    try:
        topo = Topology.model_validate(data)
    except ValidationError as e:
        found = [_field_error(err) for err in e.errors()]
        raise ConfigError(_capped_report(p, tree, found)) from None
    found = topo.problems()
    if found:
        raise ConfigError(_capped_report(p, tree, found))
    if topo.name is None:
        stem = p.stem.replace("-", "").replace("_", "").lower()[:12]
        topo = topo.model_copy(update={"name": stem if LAB_NAME_RE.match(stem) else "lab"})
    if mode is not None and mode != topo.mode:
        # The file is valid in its own mode, so whatever is wrong now is the override's doing.
        topo = topo.model_copy(update={"mode": mode})
        found = [(loc, f"--mode {mode}: {msg}") for loc, msg in topo.problems()]
        if found:
            raise ConfigError(_capped_report(p, tree, found))
    return topo


def _read_text(p: Path) -> str:
    try:
        with p.open("rb") as fh:
            raw = fh.read(MAX_FILE_BYTES + 1)
            size = os.fstat(fh.fileno()).st_size
    except OSError as e:
        raise ConfigError(f"{p}: cannot read: {e.strerror}") from None
    if len(raw) > MAX_FILE_BYTES:
        count = f"{size} bytes, more" if size > MAX_FILE_BYTES else "more"
        raise ConfigError(
            f"{p}: {count} than the {MAX_FILE_BYTES} bytes a topology file may have "
            "(MAX_FILE_BYTES); fix: give a topology file (labs/*.yaml are a few KB)"
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        what = f"byte {e.start} is {raw[e.start]:#04x}, invalid in UTF-8"
    else:
        if "\0" not in text:
            return text
        what = f"byte {text.index(chr(0))} is a NUL"
    raise ConfigError(
        f"{p}: not a UTF-8 YAML text file ({what}); fix: give a topology file such as "
        "labs/basic.yaml"
    )


_YAML_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when built with it


def _compose(p: Path, text: str) -> yaml.Node:
    """The YAML node tree (with lines), checked to be small enough to walk and construct."""
    try:
        tree = yaml.compose(text, Loader=_YAML_LOADER)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{p}:{mark.line + 1}" if mark else str(p)
        raise ConfigError(f"{where}: not valid YAML: {getattr(e, 'problem', e)}") from None
    if tree is None:
        raise ConfigError(f"{p}: the file is empty; fix: give a topology (see labs/basic.yaml)")
    _check_tree(p, tree)
    dup = _duplicate_key(tree)
    if dup is not None:
        key, line, first = dup
        raise ConfigError(
            f"{p}:{line}: {key!r} is defined twice (first at line {first}); fix: rename or merge"
            " one of them (YAML would silently keep only the last)"
        )
    return tree


def _construct(p: Path, tree: yaml.Node) -> dict[str, Any]:
    """The data of the checked tree (safe constructor: plain data only), a mapping."""
    try:
        data = yaml.SafeLoader("").construct_document(tree)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{p}:{mark.line + 1}" if mark else str(p)
        raise ConfigError(f"{where}: not valid YAML: {getattr(e, 'problem', e)}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def _check_tree(p: Path, tree: yaml.Node) -> None:
    """Refuse a tree too big, too deep or recursive to walk, counting each alias as what it
    repeats (``yaml.compose`` shares an anchored node, so a few lines can stand for 10**9)."""
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()

    def size(node: yaml.Node, depth: int) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        where = f"{p}:{node.start_mark.line + 1}"
        if key in open_nodes:
            raise ConfigError(f"{where}: an alias refers to its own anchor; fix: write it out")
        if depth > MAX_YAML_DEPTH:
            raise ConfigError(
                f"{where}: nested deeper than {MAX_YAML_DEPTH} (MAX_YAML_DEPTH); fix: a topology "
                "nests 5 deep (see labs/basic.yaml)"
            )
        open_nodes.add(key)
        n = 1
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                n += size(k, depth + 1) + size(v, depth + 1)
                if n > MAX_YAML_VALUES:
                    break
        elif isinstance(node, yaml.SequenceNode):
            for item in node.value:
                n += size(item, depth + 1)
                if n > MAX_YAML_VALUES:
                    break
        open_nodes.discard(key)
        sizes[key] = n
        return n

    if size(tree, 0) > MAX_YAML_VALUES:
        raise ConfigError(
            f"{p}: more than {MAX_YAML_VALUES} YAML values once anchors and aliases are expanded "
            "(MAX_YAML_VALUES); fix: write the topology out plainly, within the MAX_* limits"
        )


def _bound_problems(doc: Any) -> list[tuple[Loc, str]]:
    """The counts over their limits, each one error (field, count, limit, fix). ``doc`` is the
    YAML node tree or the data built from it; containers are counted first, then what is inside
    the ones within bounds, so this is cheap however large the file."""
    out: list[tuple[Loc, str]] = []

    def over(loc: Loc, value: Any, limit: int, const: str, noun: str, scope: str) -> bool:
        count = _len(value)
        if count is not None and count > limit:
            msg = f"{count} {noun}, more than {limit} {scope} ({const}); fix: list fewer {noun}"
            out.append((loc, msg))
            return True
        return False

    nodes = _get(doc, "nodes")
    if not over(("nodes",), nodes, MAX_NODES, "MAX_NODES", "nodes", "in a lab"):
        for name, node in _items(nodes):
            addrs = _get(node, "addresses")
            limit = MAX_ADDRESSES_PER_NODE
            const = "MAX_ADDRESSES_PER_NODE"
            over(("nodes", name, "addresses"), addrs, limit, const, "addresses", "per node")
    servers = [n for _, n in _items(nodes) if _scalar(_get(n, "role")) == "server"]
    over(("nodes",), servers, MAX_SERVERS, "MAX_SERVERS", "servers", "in a lab")
    over(("links",), _get(doc, "links"), MAX_LINKS, "MAX_LINKS", "links", "in a lab")
    segments = _get(doc, "segments")
    if not over(("segments",), segments, MAX_SEGMENTS, "MAX_SEGMENTS", "segments", "in a lab"):
        for i, seg in enumerate(_seq(segments)):
            members = _get(seg, "members")
            loc = ("segments", i, "members")
            over(loc, members, MAX_NODES, "MAX_NODES", "members", "in a segment")
    services = _get(doc, "services")
    if not over(("services",), services, MAX_SERVICES, "MAX_SERVICES", "services", "in a lab"):
        for i, svc in enumerate(_seq(services)):
            for field in ("muxes", "servers"):
                listed = _get(svc, field)
                over(("services", i, field), listed, MAX_NODES, "MAX_NODES", field, "in a service")
    holes = _get(doc, "blackhole")
    over(("blackhole",), holes, MAX_BLACKHOLES, "MAX_BLACKHOLES", "networks", "to black-hole")
    return out


# The same questions of a YAML node or of the data built from it (for _bound_problems).
_MERGE = "tag:yaml.org,2002:merge"


def _len(x: Any) -> int | None:
    if isinstance(x, dict | list):
        return len(x)
    if isinstance(x, yaml.MappingNode):
        return sum(k.tag != _MERGE for k, _ in x.value)
    if isinstance(x, yaml.SequenceNode):
        return len(x.value)
    return None


def _items(x: Any) -> list[tuple[Any, Any]]:
    if isinstance(x, dict):
        return list(x.items())
    if isinstance(x, yaml.MappingNode):
        return [(_scalar(k), v) for k, v in x.value if k.tag != _MERGE]
    return []


def _get(x: Any, key: str) -> Any:
    return next((v for k, v in _items(x) if k == key), None)


def _seq(x: Any) -> list[Any]:
    if isinstance(x, list):
        return x
    return list(x.value) if isinstance(x, yaml.SequenceNode) else []


def _scalar(x: Any) -> Any:
    return x.value if isinstance(x, yaml.ScalarNode) else x


_ITEM_MODELS: dict[str, tuple[type[BaseModel], str]] = {
    "nodes": (Node, "a node's"),
    "links": (Link, "a link's"),
    "segments": (Segment, "a segment's"),
    "services": (Service, "a service's"),
}


def _field_error(err: Any) -> tuple[Loc, str]:
    """A pydantic error as (location, message); an unknown key's lists the keys allowed there."""
    loc = tuple(err["loc"])
    msg = str(err["msg"]).removeprefix("Value error, ")
    if err["type"] != "extra_forbidden":
        return loc, msg
    model: type[BaseModel]
    if len(loc) == 1:
        model, whose = Topology, "a topology's"
    elif len(loc) == 3 and loc[0] in _ITEM_MODELS:
        model, whose = _ITEM_MODELS[loc[0]]
    else:
        return loc, msg
    allowed = list(model.model_fields)
    key = loc[-1]
    close = difflib.get_close_matches(str(key), allowed, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return loc, f"unknown key {key!r}{hint}; fix: {whose} keys are {', '.join(allowed)}"


def _capped_report(p: Path, tree: yaml.Node, found: list[tuple[Loc, str]]) -> str:
    """file:line: field: message, one line per error, the first MAX_ERROR_LINES of them."""
    text = _report(p, tree, found[:MAX_ERROR_LINES])
    if len(found) > MAX_ERROR_LINES:
        text += f"\n... and {len(found) - MAX_ERROR_LINES} more errors in {p}"
    return text
