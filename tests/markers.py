"""Markers shared by the framework's own tests.

``requires_root`` skips a test that needs root (namespaces, XDP/tc attach, BPF loads) with a
reason that says how to run it::

    from tests.markers import requires_root

    @requires_root
    def test_attach(): ...

``need_feature("live-frames")`` (called at the start of a test) skips it with the feature
probe's own reason where this kernel lacks the feature (dsrconform.features): engine-specific
tests run where the engine works; the fallback paths are tested everywhere.

``requires_docker`` skips a docker-backend test when no Docker engine answers, unless ``CI`` is
set (CI starts the engine, so there a missing one is a failure, not a skip).
"""

from __future__ import annotations

import os

import pytest

ROOT_REASON = "needs root (CAP_BPF/CAP_NET_ADMIN): run `make test` as root"

requires_root = pytest.mark.skipif(os.geteuid() != 0, reason=ROOT_REASON)


def need_feature(key: str) -> None:
    """Skip the calling test, with the probe's reason, unless this kernel has feature ``key``."""
    from dsrconform.features import probe

    result = probe(key)
    if not result.ok:
        pytest.skip(f"this kernel lacks it: {result.reason}")


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def docker_engine_reachable() -> bool:
    try:
        import docker

        client = docker.from_env(timeout=3)
        try:
            client.ping()
        finally:
            client.close()
    except Exception:
        return False
    return True


DOCKER_REASON = (
    "the docker backend needs a running Docker engine: run `scripts/start-dockerd.sh` as root "
    "(`make test` does); under CI (CI=true) these tests run and fail instead of skipping"
)

# Skips docker-backend tests when no engine answers, except in CI, where they must run.
requires_docker = pytest.mark.skipif(
    not in_ci() and not docker_engine_reachable(), reason=DOCKER_REASON
)
