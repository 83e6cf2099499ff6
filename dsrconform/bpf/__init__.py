"""BPF plumbing shared by the framework and by targets: compile (clang, cached) and load (libbpf).

- :mod:`dsrconform.bpf.build` compiles ``*.bpf.c`` sources with clang, cached by source hash.
- :mod:`dsrconform.bpf.libbpf` loads objects, programs maps, attaches XDP/tc programs and runs
  ``BPF_PROG_TEST_RUN``, through ctypes over the system's libbpf.so.1.
"""

PASS_PROGRAM = "dsrc_pass"
"""The XDP_PASS program of ``progs/xdp_pass.bpf.c``: the lab puts it on the router's end of each
MUX link (XDP_TX frames reach a veth peer only when it runs native XDP), the feature probes run
it, and fault code tells it from a target's XDP program by this name."""
