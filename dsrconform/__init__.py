"""dsrconform: chaos and conformance testing for Direct Server Return load-balancer deployments.

The framework is SUT-agnostic: it reaches a DSR stack only through the target protocol
(:mod:`dsrconform.target`). The reference stack in ``reference_impl`` is one such target.
"""

__version__ = "0.1.0"
