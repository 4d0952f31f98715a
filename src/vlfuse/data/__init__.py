"""Data: built-in scenes, LLaVA-format files, transforms, tokenisation and batching."""
