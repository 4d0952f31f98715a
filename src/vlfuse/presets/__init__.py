"""Built-in run presets (YAML), loaded by name with ``--config NAME``."""
