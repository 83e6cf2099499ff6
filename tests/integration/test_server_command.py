"""A user-chosen server application (nginx, examples/servers/nginx.sh) serves the suites' short
connections through the reference stack: the lab starts it instead of the project's app, waits
until it accepts connections, and every `GET /id` is answered by one of the servers."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import pytest

from dsrconform.lab import Lab
from tests.markers import requires_root

ROOT = Path(__file__).resolve().parents[2]
NGINX = ROOT / "examples" / "servers" / "nginx.sh"

pytestmark = [
    requires_root,
    pytest.mark.skipif(
        shutil.which("nginx") is None,
        reason="nginx is not installed (scripts/bootstrap.sh installs nginx-light)",
    ),
]


def test_nginx_as_the_server_command_answers_every_short_connection() -> None:
    with Lab.up(ROOT / "labs" / "basic.yaml", name="tngx", server_command=f"sh {NGINX}") as lab:
        assert f"sh {NGINX}" in lab.status()["server_app"]
        servers = lab.topology.of_role("server")
        for server in servers:  # nginx, not the project's app, listens on the servers
            procs = lab.run(server, ["ps", "-eo", "args"]).stdout
            assert "nginx: master process" in procs and "dsrconform.app" not in procs, procs
        client = lab.topology.of_role("client")[0]
        res = lab.run(
            client,
            [
                lab.python,
                "-m",
                "dsrconform.traffic.shortconns",
                "--vip",
                "198.19.0.10",
                "--sources",
                lab.topology.uplink(client).ip,
                "--count",
                "300",
                "--rate",
                "300",
                "--duration",
                "2",
            ],
            timeout=60,
        )
    recs = [json.loads(line) for line in res.stdout.splitlines()]
    closed = [r for r in recs if r["kind"] == "closed"]
    good = [r for r in closed if r["reason"] == "eof" and r["verified"] == r["received"] > 0]
    assert len(good) == 300, f"{300 - len(good)} of 300 connections failed: {closed[:3]}"
    answered = Counter(r["server"] for r in recs if r["kind"] == "first_byte")
    assert set(answered) == set(servers), f"servers that answered: {answered}"
