"""Katran's consistent-hash ring, computed the way its control plane computes it.

Katran's ``KatranLb`` keeps one ring of ``ring_size`` slots (65537 by default,
``kDefaultChRingSize``) per VIP; slot ``i`` of VIP ``n`` is the ``ch_rings`` entry
``n * ring_size + i`` and holds a real's number (its index in the ``reals`` array; numbers start
at 1, 0 meaning "no real"). What this module reproduces (katran/lib, read at the pinned commit):

- **Endpoints** (``Vip::getEndpoints``): every real of the VIP with a non-zero weight, as
  ``(num, weight, hash)``, sorted by ``hash``. The hash is the real address's
  ``folly::IPAddress::hash()`` (``KatranLb::modifyRealsForVip``), not its number: for IPv4,
  ``hash_128_to_64(AF_INET, fnv32_buf(address bytes))`` with folly's signed-char FNV-1; for
  IPv6 (``IPAddressV6::hash``), ``hash_combine(AF_INET6, h1, h2)`` =
  ``hash_128_to_64(AF_INET6, hash_128_to_64(h1, h2))`` of the address's 128-bit SpookyHash V2
  (seeds 0, 0).
- **Permutation** (``MaglevBase::genMaglevPermutation``): ``offset = murmur(hash, 42, 0) %
  ring_size`` and ``skip = murmur(hash, 2718281828, 2307) % (ring_size - 1) + 1``, ``murmur``
  being Katran's two-word ``MurmurHash3_x64_64``.
- **Filling**: ``MaglevHash`` (``HashFunction::Maglev``, ``KatranConfig``'s default, which
  ``KatranLb::addVip`` passes to every VIP) lets an endpoint of weight ``w`` take ``w`` slots on
  its first turn and one per turn after; ``MaglevHashV2`` (``HashFunction::MaglevV2``) spreads
  weights evenly with a running credit. Both stop once every slot is taken; one endpoint fills
  the ring alone; no endpoint leaves the ring as it was (``Vip::calculateHashRing`` returns no
  change).
- **Updates** (``Vip::calculateHashRing`` + ``KatranLb::programHashRing``): only the slots whose
  real changed are written.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

DEFAULT_RING_SIZE = 65537
"""``kDefaultChRingSize`` (CHHelpers.h) and ``RING_SIZE`` (balancer_consts.h)."""
HashFunction = Literal["maglev", "maglev_v2"]
DEFAULT_HASH: HashFunction = "maglev"
"""``KatranConfig::hashFunction`` defaults to ``HashFunction::Maglev`` (KatranLbStructs.h)."""

_M64 = (1 << 64) - 1
_M32 = (1 << 32) - 1
# MaglevBase.cpp's seeds.
_SEED0, _SEED1, _SEED2, _SEED3 = 0, 2307, 42, 2718281828
_AF_INET = 2
_AF_INET6 = 10
_SPOOKY_CONST = 0xDEADBEEFDEADBEEF


def _rotl64(x: int, r: int) -> int:
    return ((x << r) | (x >> (64 - r))) & _M64


def _fmix64(k: int) -> int:
    k ^= k >> 33
    k = (k * 0xFF51AFD7ED558CCD) & _M64
    k ^= k >> 33
    k = (k * 0xC4CEB9FE1A85EC53) & _M64
    return k ^ (k >> 33)


def murmur3_x64_64(a: int, b: int, seed: int) -> int:
    """Katran's ``MurmurHash3_x64_64(A, B, seed)``: MurmurHash3 x64 over one 16-byte block (the
    words ``a`` and ``b``), the two halves of the 128-bit result added."""
    c1, c2 = 0x87C37B91114253D5, 0x4CF5AD432745937F
    h1 = h2 = seed & _M32
    k1 = (a * c1) & _M64
    k1 = (_rotl64(k1, 31) * c2) & _M64
    h1 ^= k1
    h1 = (_rotl64(h1, 27) + h2) & _M64
    h1 = (h1 * 5 + 0x52DCE729) & _M64
    k2 = (b * c2) & _M64
    k2 = (_rotl64(k2, 33) * c1) & _M64
    h2 ^= k2
    h2 = (_rotl64(h2, 31) + h1) & _M64
    h2 = (h2 * 5 + 0x38495AB5) & _M64
    h1 ^= 16
    h2 ^= 16
    h1 = (h1 + h2) & _M64
    h2 = (h2 + h1) & _M64
    h1, h2 = _fmix64(h1), _fmix64(h2)
    return (h1 + h2) & _M64


def _fnv32_signed(data: bytes) -> int:
    # folly::hash::fnv32_buf: FNV-1 whose bytes are read as signed char (sign-extended on XOR).
    h = 2166136261
    for byte in data:
        h = (h + (h << 1) + (h << 4) + (h << 7) + (h << 8) + (h << 24)) & _M32
        h ^= (byte - 256) & _M32 if byte >= 0x80 else byte
    return h


def _hash_128_to_64(upper: int, lower: int) -> int:
    mul = 0x9DDFEA08EB382D69
    a = ((lower ^ upper) * mul) & _M64
    a ^= a >> 47
    b = ((upper ^ a) * mul) & _M64
    b ^= b >> 47
    return (b * mul) & _M64


def _rot64(x: int, k: int) -> int:
    return ((x << k) | (x >> (64 - k))) & _M64


def _short_mix(h: list[int]) -> None:
    # SpookyHash V2's ShortMix: (rotated word, added word, xored word) per step.
    for i, r in enumerate((50, 52, 30, 41, 54, 48, 38, 37, 62, 34, 5, 36)):
        a, b, c = (i + 2) % 4, (i + 3) % 4, i % 4
        h[a] = (_rot64(h[a], r) + h[b]) & _M64
        h[c] ^= h[a]


def _short_end(h: list[int]) -> None:
    # SpookyHash V2's ShortEnd: h[a] ^= h[b]; h[b] = rot(h[b]); h[a] += h[b].
    for i, r in enumerate((15, 52, 26, 51, 28, 9, 47, 54, 32, 25, 63)):
        a, b = (i + 3) % 4, (i + 2) % 4
        h[a] ^= h[b]
        h[b] = _rot64(h[b], r)
        h[a] = (h[a] + h[b]) & _M64


def spooky_v2_short(data: bytes, seed1: int = 0, seed2: int = 0) -> tuple[int, int]:
    """Bob Jenkins' SpookyHash V2 ``Short`` (messages under 192 bytes; folly's
    ``SpookyHashV2::Hash128`` takes this path for them), on a little-endian machine."""
    if len(data) >= 192:
        raise ValueError("spooky_v2_short hashes messages under 192 bytes")
    h = [seed1 & _M64, seed2 & _M64, _SPOOKY_CONST, _SPOOKY_CONST]

    def word(i: int) -> int:
        return int.from_bytes(data[i : i + 8], "little")

    pos, rem = 0, len(data) % 32
    if len(data) > 15:
        for _ in range(len(data) // 32):
            h[2], h[3] = (h[2] + word(pos)) & _M64, (h[3] + word(pos + 8)) & _M64
            _short_mix(h)
            h[0], h[1] = (h[0] + word(pos + 16)) & _M64, (h[1] + word(pos + 24)) & _M64
            pos += 32
        if rem >= 16:
            h[2], h[3] = (h[2] + word(pos)) & _M64, (h[3] + word(pos + 8)) & _M64
            _short_mix(h)
            pos, rem = pos + 16, rem - 16
    h[3] = (h[3] + (len(data) << 56)) & _M64
    tail = data[pos : pos + rem]
    if rem == 0:
        h[2], h[3] = (h[2] + _SPOOKY_CONST) & _M64, (h[3] + _SPOOKY_CONST) & _M64
    else:
        h[2] = (h[2] + int.from_bytes(tail[:8], "little")) & _M64
        h[3] = (h[3] + int.from_bytes(tail[8:], "little")) & _M64
    _short_end(h)
    return h[0], h[1]


def real_hash(address: str) -> int:
    """``folly::IPAddress(address).hash()``: the endpoint hash Katran's control plane gives a
    real (``KatranLb::modifyRealsForVip``)."""
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:  # folly hashes a mapped address as its IPv4 one
            return real_hash(str(ip.ipv4_mapped))
        h1, h2 = spooky_v2_short(ip.packed)
        return _hash_128_to_64(_AF_INET6, _hash_128_to_64(h1, h2))
    return _hash_128_to_64(_AF_INET, _fnv32_signed(ip.packed))


@dataclass(frozen=True)
class Endpoint:
    """``katran::Endpoint``: a real's number, weight and hash."""

    num: int
    weight: int
    hash: int


def endpoints(reals: Sequence[tuple[int, str, int]]) -> list[Endpoint]:
    """Endpoints of ``(num, address, weight)`` reals as ``Vip::getEndpoints`` builds them:
    zero weights left out, sorted by hash."""
    out = [Endpoint(num, weight, real_hash(addr)) for num, addr, weight in reals if weight]
    return sorted(out, key=lambda e: e.hash)


def _permutation(ep: Endpoint, ring_size: int) -> tuple[int, int]:
    offset = murmur3_x64_64(ep.hash, _SEED2, _SEED0) % ring_size
    skip = murmur3_x64_64(ep.hash, _SEED3, _SEED1) % (ring_size - 1) + 1
    return offset, skip


def generate_ring(
    eps: Sequence[Endpoint], ring_size: int = DEFAULT_RING_SIZE, func: HashFunction = DEFAULT_HASH
) -> list[int]:
    """The ring ``generateHashRing`` returns: a real number per slot, -1 where none (only when
    ``eps`` is empty). ``eps`` in the order Katran passes them (:func:`endpoints`)."""
    if ring_size < 2:
        raise ValueError(f"ring size {ring_size}: Katran's rings need at least 2 slots")
    result = [-1] * ring_size
    if not eps:
        return result
    if len(eps) == 1:
        return [eps[0].num] * ring_size
    perms = [_permutation(ep, ring_size) for ep in eps]
    nxt = [0] * len(eps)
    runs = 0

    def place(i: int) -> None:
        offset, skip = perms[i]
        cur = (offset + nxt[i] * skip) % ring_size
        while result[cur] >= 0:
            nxt[i] += 1
            cur = (offset + nxt[i] * skip) % ring_size
        result[cur] = eps[i].num
        nxt[i] += 1

    if func == "maglev":
        weights = [ep.weight for ep in eps]
        while True:
            for i in range(len(eps)):
                for _ in range(weights[i]):
                    place(i)
                    runs += 1
                    if runs == ring_size:
                        return result
                weights[i] = 1
    max_weight = max(ep.weight for ep in eps)
    credit = [0] * len(eps)
    while True:
        for i, ep in enumerate(eps):
            credit[i] += ep.weight
            if credit[i] >= max_weight:
                credit[i] -= max_weight
                place(i)
                runs += 1
                if runs == ring_size:
                    return result


def ring_delta(old: Sequence[int], new: Sequence[int]) -> list[tuple[int, int]]:
    """``(position, real)`` of every slot whose real changed (``Vip::calculateHashRing``)."""
    if len(old) != len(new):
        raise ValueError(f"rings of different sizes: {len(old)} and {len(new)}")
    return [(i, r) for i, (o, r) in enumerate(zip(old, new, strict=True)) if o != r]


# --- the data plane's side: which slot a flow reads (balancer.bpf.c get_packet_hash) ----------

MAX_VIPS = 512
"""``MAX_VIPS`` (balancer_consts.h): ``INIT_JHASH_SEED`` is ``MAX_VIPS * RING_SIZE``."""
_JHASH_INITVAL = 0xDEADBEEF


def _rol32(word: int, shift: int) -> int:
    return ((word << shift) | (word >> (32 - shift))) & _M32


def _jhash_final(a: int, b: int, c: int) -> int:
    c = ((c ^ b) - _rol32(b, 14)) & _M32
    a = ((a ^ c) - _rol32(c, 11)) & _M32
    b = ((b ^ a) - _rol32(a, 25)) & _M32
    c = ((c ^ b) - _rol32(b, 16)) & _M32
    a = ((a ^ c) - _rol32(c, 4)) & _M32
    b = ((b ^ a) - _rol32(a, 14)) & _M32
    return ((c ^ b) - _rol32(b, 24)) & _M32


_JHASH_MIX_STEPS = (
    (0, 2, 1, 4),
    (1, 0, 2, 6),
    (2, 1, 0, 8),
    (0, 2, 1, 16),
    (1, 0, 2, 19),
    (2, 1, 0, 4),
)
"""``__jhash_mix`` of (a, b, c) = v[0..2], one line per step: v[x] -= v[y]; v[x] ^= rol32(v[y],
r); v[y] += v[z]."""


def _jhash_mix(a: int, b: int, c: int) -> tuple[int, int, int]:
    for x, y, z, r in _JHASH_MIX_STEPS:
        v = [a, b, c]
        v[x] = ((v[x] - v[y]) & _M32) ^ _rol32(v[y], r)
        v[y] = (v[y] + v[z]) & _M32
        a, b, c = v
    return a, b, c


def jhash_2words(a: int, b: int, initval: int) -> int:
    """The kernel's (and Katran's linux_includes/jhash.h) ``jhash_2words``."""
    iv = (initval + _JHASH_INITVAL + (2 << 2)) & _M32
    return _jhash_final((a + iv) & _M32, (b + iv) & _M32, iv)


def jhash(key: bytes, initval: int) -> int:
    """Katran's ``jhash(key, length, initval)`` over bytes (linux_includes/jhash.h), words read
    as the little-endian CPU reads them."""
    a = b = c = (_JHASH_INITVAL + len(key) + initval) & _M32
    k, rest = 0, len(key)
    while rest > 12:
        a = (a + int.from_bytes(key[k : k + 4], "little")) & _M32
        b = (b + int.from_bytes(key[k + 4 : k + 8], "little")) & _M32
        c = (c + int.from_bytes(key[k + 8 : k + 12], "little")) & _M32
        a, b, c = _jhash_mix(a, b, c)
        k, rest = k + 12, rest - 12
    if rest == 0:
        return c
    tail = key[k:]
    a = (a + int.from_bytes(tail[0:4], "little")) & _M32
    b = (b + int.from_bytes(tail[4:8], "little")) & _M32
    c = (c + int.from_bytes(tail[8:12], "little")) & _M32
    return _jhash_final(a, b, c)


def flow_slot(
    src: str, sport: int, dport: int, ring_size: int = DEFAULT_RING_SIZE, *, port_zeroed: bool
) -> int:
    """The ring slot Katran's XDP program reads for a flow from ``src:sport`` to port ``dport``
    (``get_packet_hash`` with the VIP's default flags): for IPv4 ``jhash_2words(src, ports,
    MAX_VIPS * RING_SIZE) % RING_SIZE``, for IPv6 the source first folded by ``jhash(src, 16,
    MAX_VIPS)`` (``hash_16bytes``, ``INIT_JHASH_SEED_V6``), the words as the little-endian CPU
    loads them from the packet. ``port_zeroed``: the VIP matched as port 0 (a VIP for any
    port), so the destination port is hashed as 0."""
    ip = ipaddress.ip_address(src)
    if isinstance(ip, ipaddress.IPv6Address):
        a = jhash(ip.packed, MAX_VIPS)
    else:
        a = int.from_bytes(ip.packed, "little")
    ports = sport.to_bytes(2, "big") + (0 if port_zeroed else dport).to_bytes(2, "big")
    b = int.from_bytes(ports, "little")
    return jhash_2words(a, b, MAX_VIPS * ring_size) % ring_size
