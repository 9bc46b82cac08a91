"""Bottom-layer helpers: file I/O, distributed collectives, registries."""
