"""A template dsrconform target adapter (docs/targets.md): copy it, keep the shape."""
