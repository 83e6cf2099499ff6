"""Configuration of one reference MUX: its addresses and the VIPs it serves (a YAML file).

Example (``examples/mux-demo.yaml``)::

    mux:
      address: 198.18.10.1          # outer source of encapsulated packets
      mac: "02:00:00:0a:00:01"      # this MUX's interface
      next_hop_mac: "02:00:00:01:00:01"  # the border router, toward the servers
    vips:
      - {address: 198.19.0.10, port: 80, proto: tcp,
         backends: [198.18.20.1, 198.18.20.2, 198.18.20.3]}

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
    mac: str = "02:00:00:00:00:02"
    next_hop_mac: str = "02:00:00:00:00:01"
    mtu: int = Field(default=0, ge=0, le=65535, description="largest IP packet emitted; 0 = off")
    ttl: int = Field(default=64, ge=1, le=255)
    hash_seed: int = Field(default=DEFAULT_SEED, ge=0, lt=2**32)
    ring_size: int = Field(default=maglev.DEFAULT_TABLE_SIZE, ge=3)
    conn_table_size: int = Field(default=C("DEFAULT_CONN_ENTRIES"), ge=16)
    new_conn_rate: int = Field(default=25_000, ge=0, lt=2**32, description="per CPU per second")
    new_conn_burst: int = Field(default=5_000, ge=1, lt=2**32)

    _addr = field_validator("address")(lambda v: lab_address(v, "MUX address"))
    _macs = field_validator("mac", "next_hop_mac")(_mac)

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
        return out

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
        if len(bes) > C("MAX_BACKENDS"):
            raise ValueError(f"{len(bes)} backends; this build supports {C('MAX_BACKENDS')}")
        return self


def load_mux_config(path: str | Path) -> MuxConfig:
    return load_model(path, MuxConfig)
