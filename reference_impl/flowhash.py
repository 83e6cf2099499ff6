"""The MUX's flow hashes, bit for bit the same as ``flow_hash()`` and ``flow_hash6()`` in
``bpf/dsr_helpers.h``.

Every MUX instance uses the same seed, so every MUX maps a 5-tuple to the same Maglev slot: a
flow re-hashed to another MUX by the border router still reaches its server. Inputs are host-order
integers (addresses as 32-bit numbers, or 128-bit numbers for IPv6, ports as 16-bit numbers).
"""

from __future__ import annotations

import ipaddress

DEFAULT_SEED = 0x5EED_D5C0
_M32 = 0xFFFFFFFF


def fmix32(h: int) -> int:
    """MurmurHash3's 32-bit finaliser: cheap in BPF, avalanches every input bit."""
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & _M32
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & _M32
    h ^= h >> 16
    return h


def flow_hash(saddr: int, daddr: int, sport: int, dport: int, proto: int, seed: int) -> int:
    h = seed & _M32
    h = fmix32(h ^ saddr)
    h = fmix32(h ^ daddr)
    h = fmix32(h ^ ((sport << 16) | dport))
    return fmix32(h ^ proto)


def flow_hash6(saddr: int, daddr: int, sport: int, dport: int, proto: int, seed: int) -> int:
    """The IPv6 flow hash: all 128 bits of both addresses, 32 bits at a time from the most
    significant word (network order), then the ports and protocol as :func:`flow_hash`."""
    h = seed & _M32
    for addr in (saddr, daddr):
        for shift in (96, 64, 32, 0):
            h = fmix32(h ^ ((addr >> shift) & _M32))
    h = fmix32(h ^ ((sport << 16) | dport))
    return fmix32(h ^ proto)


FLOW_LABEL_MASK = 0xFFFFF


def flow_label(h: int) -> int:
    """The outer IPv6 flow label of a flow whose hash is ``h``: its low 20 bits."""
    return h & FLOW_LABEL_MASK


def vip_slot(addr: int, port: int, proto: int, seed: int, slots: int) -> int:
    """The slot of a VIP service in a table of ``slots`` (a power of 2) entries, as ``vip_slot()``
    in ``bpf/dsr_helpers.h``; the control plane picks ``seed`` so that no two services share one."""
    mixed = ((((port << 8) | proto) * 0x9E3779B1) & _M32) ^ addr ^ seed
    return fmix32(mixed & _M32) & (slots - 1)


def ring_slot(h: int, ring_size: int) -> int:
    """The Maglev table slot of flow hash ``h``: ``h * M / 2**32`` (multiply and shift, as in
    ``ring_slot()`` of ``bpf/dsr_helpers.h``). Uniform like ``h % M``, without a division."""
    return ((h & _M32) * ring_size) >> 32


def ip_int(addr: str) -> int:
    return int(ipaddress.IPv4Address(addr))


def flow_hash_str(
    src: str, dst: str, sport: int, dport: int, proto: int, seed: int = DEFAULT_SEED
) -> int:
    """:func:`flow_hash` for dotted-quad addresses, :func:`flow_hash6` for IPv6 ones."""
    s, d = ipaddress.ip_address(src), ipaddress.ip_address(dst)
    if s.version != d.version:
        raise ValueError(f"{src} and {dst} are of different address families")
    hash_ = flow_hash6 if s.version == 6 else flow_hash
    return hash_(int(s), int(d), sport, dport, proto, seed)
