"""``vlfuse compare``: the fusion designs trained on the same data and backbones, measured side by side.

``designs`` (presets per row), ``runner`` (the grid of cells), ``cell`` (one cell's worker process),
``measure`` (latency, KV cache, memory), ``report`` (results files and table), ``plots``.
"""
