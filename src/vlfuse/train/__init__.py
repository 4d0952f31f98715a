"""Training: the loop, per-component policies (train / freeze / lora), atomic checkpoints and exact resume."""
