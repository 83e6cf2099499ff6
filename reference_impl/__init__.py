"""The reference DSR stack: XDP MUX, server agents, egress gateway, control plane and mutants.

It is a target like any third-party stack (see :mod:`dsrconform.target`): the framework never
imports it directly, only through the ``dsrconform.targets`` entry point.
"""
