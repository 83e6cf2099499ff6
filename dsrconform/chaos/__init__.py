"""Chaos scenarios: faults as objects with a contract (:mod:`.fault`; the library in
:mod:`.library`, :mod:`.muxfaults`, :mod:`.netfaults`, composites in :mod:`.kinds`), scenario
files and their plan (:mod:`.scenario`, :mod:`.plan`), a timeline whose rollbacks always run
(:mod:`.schedule`), the runner (:mod:`.runner`) and ``dsrconform chaos`` (:mod:`.cli`). See
docs/chaos.md."""
