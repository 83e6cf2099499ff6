"""The C layouts of ``bpf/dsr_shared.h`` as Python packers, and its constants parsed from the file.

Parsing the header (instead of repeating its numbers here) means the BPF side and the control
plane cannot drift: a constant changed in C is the constant Python uses.
"""

from __future__ import annotations

import functools
import ipaddress
import re
import struct
from pathlib import Path

BPF_DIR = Path(__file__).resolve().parent / "bpf"
SHARED_H = BPF_DIR / "dsr_shared.h"

IPPROTO = {"tcp": 6, "udp": 17, "icmp": 1}
IPPROTO_ICMPV6 = 58


@functools.cache
def constants() -> dict[str, int]:
    """Every ``#define NAME <integer>`` of dsr_shared.h."""
    out: dict[str, int] = {}
    for m in re.finditer(
        r"^\s*#define\s+([A-Z0-9_]+)\s+(0x[0-9a-fA-F]+|\d+)\b", SHARED_H.read_text(), re.M
    ):
        out[m.group(1)] = int(m.group(2), 0)
    return out


def C(name: str) -> int:
    return constants()[name]


def ip_be(addr: str) -> bytes:
    """A dotted quad as the 4 network-order bytes stored in maps."""
    return ipaddress.IPv4Address(addr).packed


def ip_str(raw: bytes) -> str:
    return str(ipaddress.IPv4Address(raw))


def is_ipv6(addr: str) -> bool:
    """Is ``addr`` an IPv6 address (else IPv4)? The MUX keeps the two families in separate maps."""
    return ipaddress.ip_address(addr).version == 6


def ip6_be(addr: str) -> bytes:
    """An IPv6 address as the 16 network-order bytes stored in maps."""
    return ipaddress.IPv6Address(addr).packed


def ip6_str(raw: bytes) -> str:
    return str(ipaddress.IPv6Address(raw))


def mac_bytes(mac: str) -> bytes:
    return bytes.fromhex(mac.replace(":", "").replace("-", ""))


# --- struct packers (field order and padding exactly as in dsr_shared.h) ---------------------


def vip_key(addr: str, port: int, proto: int) -> bytes:
    return ip_be(addr) + struct.pack("!H", port) + struct.pack("BB", proto, 0)


def vip_meta(vip_index: int, num_backends: int) -> bytes:
    return struct.pack("=II", vip_index, num_backends)


def vip_slot(addr: str, port: int, proto: int, vip_index: int, num_backends: int) -> bytes:
    return vip_key(addr, port, proto) + vip_meta(vip_index, num_backends)


def backend(addr: str, flags: int = 0) -> bytes:
    return ip_be(addr) + struct.pack("=I", flags)


def vip6_key(addr: str, port: int, proto: int) -> bytes:
    return ip6_be(addr) + struct.pack("!H", port) + struct.pack("BB", proto, 0)


def backend6_tagged(index: int) -> bytes:
    """dsrc_backends[index] of an IPv6 server: the tag BACKEND6_TAG | index, flag BACKEND_F_IPV6
    (its address is dsrc_backends6[index]; see dsr_shared.h)."""
    return struct.pack("!I", C("BACKEND6_TAG") | index) + struct.pack("=I", C("BACKEND_F_IPV6"))


def flow_key6(saddr: str, daddr: str, sport: int, dport: int, proto: int) -> bytes:
    return (
        ip6_be(saddr) + ip6_be(daddr) + struct.pack("!HH", sport, dport) + bytes([proto, 0, 0, 0])
    )


def flow_key(saddr: str, daddr: str, sport: int, dport: int, proto: int) -> bytes:
    return ip_be(saddr) + ip_be(daddr) + struct.pack("!HH", sport, dport) + bytes([proto, 0, 0, 0])


def conn_value_unpack(raw: bytes) -> tuple[int, int, int]:
    """(backend index, vip index, vip incarnation)."""
    b, v, g = struct.unpack("=IHH", raw[:8])
    return b, v, g


def mux_config(
    *,
    mux_addr: str,
    hash_seed: int,
    ring_size: int,
    new_conn_rate: int,
    new_conn_burst: int,
    mtu: int,
    ttl: int,
    src_mac: str,
    dst_mac: str,
    mux_addr6: str | None = None,
) -> bytes:
    return (
        ip_be(mux_addr)
        + struct.pack("=IIIIHBB", hash_seed, ring_size, new_conn_rate, new_conn_burst, mtu, ttl, 0)
        + mac_bytes(src_mac)
        + mac_bytes(dst_mac)
        + (ip6_be(mux_addr6) if mux_addr6 else bytes(16))
    )


def u32(v: int) -> bytes:
    return struct.pack("=I", v)


def counter_unpack(raw: bytes) -> tuple[int, int]:
    """(packets, bytes)."""
    p, b = struct.unpack("=QQ", raw[:16])
    return p, b


# --- agent and gateway: one packer per record for both families. The IPv6 records (dsr_shared.h's
# nat_service6_key, gw6_key, ...) are the IPv4 ones with a 16-byte address in place of the 4-byte
# one, so the address's own family picks the layout; the caller picks the map of that family.


def addr_be(addr: str) -> bytes:
    """An IPv4 or IPv6 address as the 4 or 16 network-order bytes stored in maps."""
    return ipaddress.ip_address(addr).packed


def addr_str(raw: bytes) -> str:
    """4 or 16 network-order bytes as an address string."""
    return str(ipaddress.ip_address(raw))


def agent_config(server_addr: str, mode: int) -> bytes:
    return ip_be(server_addr) + struct.pack("=I", mode)


def nat_service_key(vip: str, vport: int, proto: int) -> bytes:
    """nat_service_key, or nat_service6_key for an IPv6 VIP."""
    return addr_be(vip) + struct.pack("!H", vport) + bytes([proto, 0])


def nat_service(addr: str, port: int) -> bytes:
    """nat_service, or nat_service6 for an IPv6 server address."""
    return addr_be(addr) + struct.pack("!H", port) + b"\0\0"


def nat_flow_key(local: str, remote: str, lport: int, rport: int, proto: int) -> bytes:
    return ip_be(local) + ip_be(remote) + struct.pack("!HH", lport, rport) + bytes([proto, 0, 0, 0])


NAT_FLOW6_SIZE = 36  # struct nat_flow6; struct nat_flow is 28
NAT_FLOW6_KEY_SIZE = 40  # struct nat_flow6_key; struct nat_flow_key is 16


def nat_flow_unpack(raw: bytes) -> tuple[str, int, str]:
    """(vip, vport, mux address) of a nat_flow or (by its size) a nat_flow6. An IPv4 flow's MUX
    is its IPv4 address, or the IPv6 one when the flow came IPv4-in-IPv6."""
    if len(raw) >= NAT_FLOW6_SIZE:
        vport = struct.unpack("!H", raw[16:18])[0]
        return addr_str(raw[0:16]), vport, addr_str(raw[20:36])
    vport = struct.unpack("!H", raw[4:6])[0]
    mux = raw[8:12] if raw[8:12] != bytes(4) else raw[12:28]
    return ip_str(raw[0:4]), vport, addr_str(mux)


def gw_key(addr: str, port: int, proto: int) -> bytes:
    """gw_key, or gw6_key for an IPv6 address."""
    return addr_be(addr) + struct.pack("!H", port) + bytes([proto, 0])


def gw_value(addr: str, port: int) -> bytes:
    """gw_value, or gw6_value for an IPv6 address."""
    return addr_be(addr) + struct.pack("!H", port) + b"\0\0"


def nat_flow_key_unpack(raw: bytes) -> tuple[str, str, int, int, int]:
    """(local addr, remote addr, local port, remote port, proto) of a nat_flow_key, or (by its
    size) a nat_flow6_key."""
    if len(raw) >= NAT_FLOW6_KEY_SIZE:
        lport, rport = struct.unpack("!HH", raw[32:36])
        return addr_str(raw[0:16]), addr_str(raw[16:32]), lport, rport, raw[36]
    lport, rport = struct.unpack("!HH", raw[8:12])
    return ip_str(raw[0:4]), ip_str(raw[4:8]), lport, rport, raw[12]
