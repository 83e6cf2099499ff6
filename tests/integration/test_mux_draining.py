"""Draining backends in the reference MUX's table logic, through BPF_PROG_TEST_RUN: a draining
backend is out of the Maglev table but keeps its index, so its established flows keep reaching
it while new flows go elsewhere, and the SYN-lookup flag stays set while its entries exist.
Root only (loads BPF)."""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from reference_impl.model import MuxModel
from reference_impl.mux import MuxProgram
from tests.integration.mux_checks import (
    BACKENDS,
    TCP_VIP,
    UDP_VIP,
    XDP_TX,
    _backend_of,
    _establish,
    mux_config,
    random_flows,
    send,
)
from tests.integration.packets import flow_frame
from tests.markers import requires_root

pytestmark = requires_root
DRAIN = BACKENDS[1]
REST = [b for b in BACKENDS if b != DRAIN]


def _to(mux: MuxProgram, flow: tuple, flags: str) -> str:
    action, out = send(mux, flow_frame(*flow, flags=flags))
    assert action == XDP_TX, f"{flow} {flags}: action {action}, expected XDP_TX"
    return _backend_of(out)


@contextmanager
def _drained() -> Iterator[tuple[MuxProgram, MuxModel, dict, list]]:
    """A MUX with 300 established TCP flows, then DRAIN draining on the TCP VIP and removed
    from the UDP VIP (so only the draining set keeps its index); the model has the new table."""
    cfg = mux_config()
    model = MuxModel(cfg)
    with MuxProgram(cfg) as mux:
        flows = random_flows(random.Random(21), 300)
        pinned = _establish(mux, model, flows)
        assert DRAIN in pinned.values(), "no flow on the server to drain: pick another seed"
        mux.set_backends(UDP_VIP, REST)
        mux.set_backends(TCP_VIP, REST, draining=[DRAIN])
        model.set_backends(TCP_VIP, REST)
        yield mux, model, pinned, flows


def test_established_flows_keep_their_draining_server_and_new_ones_avoid_it() -> None:
    with _drained() as (mux, model, pinned, flows):
        moved = [(f, pinned[f], b) for f in flows if (b := _to(mux, f, "A")) != pinned[f]]
        assert not moved, f"{len(moved)}/{len(flows)} established flows moved: {moved[:3]}"
        fresh = random_flows(random.Random(22), 300)
        fresh = [f for f in fresh if f not in pinned]
        for f in fresh:
            want = model.maglev_choice(f)
            assert want != DRAIN
            assert _to(mux, f, "S") == want, f"new flow {f}: SYN not sent by the new table"
            assert _to(mux, f, "A") == want, f"new flow {f}: ACK not sent by the new table"
        assert DRAIN in mux.conn_table().values(), "the draining server's entries were dropped"


def test_syn_lookup_stays_on_while_entries_name_a_draining_server() -> None:
    """An entry naming a draining server never agrees with a table that lacks it: clearing the
    flag would send a reused tuple's SYN by Maglev and its ACK (by the entry) to the draining
    server, splitting the connection."""
    with _drained() as (mux, _, pinned, flows):
        on_drain = [f for f in flows if pinned[f] == DRAIN]
        still = mux.refresh_syn_lookup(settle=0)
        assert (still.get(TCP_VIP) or 0) >= len(on_drain), f"flag cleared or miscounted: {still}"
        for f in on_drain:  # a reused tuple: SYN and ACK both follow the entry
            assert _to(mux, f, "S") == DRAIN == _to(mux, f, "A"), f"{f} split after a drain"
        # Removing the draining server frees its index: its entries fall back to Maglev.
        mux.set_backends(TCP_VIP, REST)
        assert DRAIN not in mux.conn_table().values()
        for f in on_drain:
            assert _to(mux, f, "A") in REST, f"{f} still reached a removed server"


def test_a_drained_server_made_active_again_keeps_its_index_and_flows() -> None:
    with _drained() as (mux, _, pinned, flows):
        index = mux._backend_index[DRAIN]
        mux.set_backends(TCP_VIP, BACKENDS)
        assert mux._backend_index[DRAIN] == index, "re-activation gave the server a new index"
        moved = [f for f in flows if _to(mux, f, "A") != pinned[f]]
        assert not moved, f"{len(moved)} established flows moved on re-activation: {moved[:3]}"


def test_a_server_both_active_and_draining_is_refused() -> None:
    with MuxProgram(mux_config()) as mux:
        with pytest.raises(ValueError, match="both active and draining"):
            mux.set_backends(TCP_VIP, BACKENDS, draining=[BACKENDS[0]])
        with pytest.raises(ValueError):
            mux.set_backends(TCP_VIP, REST, draining=["10.0.0.1"])  # outside the lab's range
