"""Labs: topologies brought up in network namespaces (or containers) with a DSR stack deployed.

See :mod:`dsrconform.lab.lab` (the :class:`Lab` API), :mod:`dsrconform.lab.registry` (naming and
the reaper), :mod:`dsrconform.topology` (the file format) and :mod:`dsrconform.topofile` (loading
a file safely).
"""

from dsrconform.lab.lab import Event, Lab

__all__ = ["Event", "Lab"]
