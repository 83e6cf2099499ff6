"""Targets shipped with dsrconform itself (registered in pyproject.toml's
``dsrconform.targets`` entry points): :mod:`.null`, a stack that deploys nothing, against which
every requirement must come out UNKNOWN or FAIL (a checker that passes it passes vacuously)."""
