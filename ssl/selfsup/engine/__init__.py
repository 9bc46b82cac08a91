"""Training engine: trainer (accelerate), checkpoints, logging, optimizers, distributed helpers."""
