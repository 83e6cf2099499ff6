"""Benchmarks: data-plane throughput measured inside throwaway namespaces.

- :mod:`dsrconform.bench.mux` -- ``dsrconform bench mux``: a target's MUX against an XDP
  MAC-swap reflector, both fed by an XDP live-frames generator over a veth pair.
"""
