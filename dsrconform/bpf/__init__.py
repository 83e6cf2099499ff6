"""BPF plumbing shared by the framework and by targets: compile (clang, cached) and load (libbpf).

- :mod:`dsrconform.bpf.build` compiles ``*.bpf.c`` sources with clang, cached by source hash.
- :mod:`dsrconform.bpf.libbpf` loads objects, programs maps, attaches XDP/tc programs and runs
  ``BPF_PROG_TEST_RUN``, through ctypes over the system's libbpf.so.1.
"""
