"""Configuration of one reference MUX: its addresses and the VIPs it serves (a YAML file).

Example (``examples/mux-demo.yaml``)::

    mux:
      address: 198.18.10.1          # outer source of encapsulated packets
      mac: "02:00:00:0a:00:01"      # this MUX's interface
      next_hop_mac: "02:00:00:01:00:01"  # the border router, toward the servers
    vips:
      - {address: 198.19.0.10, port: 80, proto: tcp,
         backends: [198.18.20.1, 198.18.20.2, 198.18.20.3]}

IPv6 (``examples/mux-demo6.yaml``): a VIP and its backends may be IPv6 (2001:2::/48); an IPv4 VIP
may have IPv6 backends (IPv4-in-IPv6, Katran's way); an IPv6 VIP has IPv6 backends only; one
VIP's backends are all of one family. IPv6 backends need ``mux.address6``, the outer IPv6 source.

Everything not given has a default that just works; see :class:`MuxSettings`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from dsrconform.configfile import lab_address, load_model
from reference_impl import maglev
from reference_impl.flowhash import DEFAULT_SEED
from reference_impl.layout import IPPROTO, C


def _family(addr: str) -> str:
    return "ipv6" if ":" in addr else "ipv4"


def _mac(v: str) -> str:
    parts = v.replace("-", ":").split(":")
    if len(parts) != 6 or not all(len(x) == 2 for x in parts):
        raise ValueError(f"{v!r} is not a MAC address (expected aa:bb:cc:dd:ee:ff)")
    try:
        bytes.fromhex("".join(parts))
    except ValueError:
        raise ValueError(f"{v!r} is not a MAC address (expected aa:bb:cc:dd:ee:ff)") from None
    return ":".join(parts).lower()


class MuxSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    address: str
    address6: str | None = Field(default=None, description="outer IPv6 source (IPv6 backends)")
    mac: str = "02:00:00:00:00:02"
    next_hop_mac: str = "02:00:00:00:00:01"
    mtu: int = Field(default=0, ge=0, le=65535, description="largest IP packet emitted; 0 = off")
    ttl: int = Field(default=64, ge=1, le=255)
    hash_seed: int = Field(default=DEFAULT_SEED, ge=0, lt=2**32)
    ring_size: int = Field(default=maglev.DEFAULT_TABLE_SIZE, ge=3)
    conn_table_size: int = Field(default=C("DEFAULT_CONN_ENTRIES"), ge=16)
    new_conn_rate: int = Field(default=25_000, ge=0, lt=2**32, description="per CPU per second")
    new_conn_burst: int = Field(default=5_000, ge=1, lt=2**32)

    _addr = field_validator("address")(lambda v: lab_address(v, "MUX address", "ipv4"))
    _macs = field_validator("mac", "next_hop_mac")(_mac)

    @field_validator("address6")
    @classmethod
    def _addr6(cls, v: str | None) -> str | None:
        return None if v is None else lab_address(v, "MUX address6", "ipv6")

    @field_validator("ring_size")
    @classmethod
    def _prime(cls, v: int) -> int:
        if not maglev.is_prime(v):
            raise ValueError(
                f"ring_size {v} is not prime; fix: use a prime such as 131071, 65537 or 4099"
            )
        return v


class VipConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    address: str
    port: int = Field(ge=1, le=65535)
    proto: Literal["tcp", "udp"] = "tcp"
    backends: list[str] = Field(default_factory=list)

    _addr = field_validator("address")(lambda v: lab_address(v, "VIP"))

    @field_validator("backends")
    @classmethod
    def _backends(cls, v: list[str]) -> list[str]:
        out = [lab_address(b, "backend") for b in v]
        if len(set(out)) != len(out):
            raise ValueError("backend listed twice; fix: list each server once")
        if len({_family(b) for b in out}) > 1:
            raise ValueError(
                "backends of both address families; fix: give one VIP IPv4 or IPv6 backends"
            )
        return out

    @model_validator(mode="after")
    def _families(self) -> VipConfig:
        if _family(self.address) == "ipv6" and any(_family(b) == "ipv4" for b in self.backends):
            raise ValueError(
                f"IPv6 VIP {self.address} with IPv4 backends; fix: give it IPv6 backends "
                "(IPv6 cannot be carried inside IPv4 here)"
            )
        return self

    @property
    def family(self) -> str:
        """The VIP's address family, "ipv4" or "ipv6"."""
        return _family(self.address)

    @property
    def key(self) -> tuple[str, int, int]:
        return (self.address, self.port, IPPROTO[self.proto])


class MuxConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    mux: MuxSettings
    vips: list[VipConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _limits(self) -> MuxConfig:
        if len(self.vips) > C("MAX_VIPS"):
            raise ValueError(f"{len(self.vips)} VIPs; this build supports {C('MAX_VIPS')}")
        keys = [v.key for v in self.vips]
        if len(set(keys)) != len(keys):
            raise ValueError("the same (address, port, proto) VIP is listed twice")
        bes = {b for v in self.vips for b in v.backends}
        need6 = sorted(
            v.address for v in self.vips if any(_family(b) == "ipv6" for b in v.backends)
        )
        if need6 and self.mux.address6 is None:
            raise ValueError(
                f"VIP {need6[0]} has IPv6 backends but mux.address6 is not set; fix: give the "
                "MUX's IPv6 address (the outer source), e.g. address6: 2001:2:0:10::2"
            )
        if len(bes) > C("MAX_BACKENDS"):
            raise ValueError(f"{len(bes)} backends; this build supports {C('MAX_BACKENDS')}")
        return self


def load_mux_config(path: str | Path) -> MuxConfig:
    return load_model(path, MuxConfig)
