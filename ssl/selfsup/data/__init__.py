"""Data: sources (what the images are), augmentations, and loaders (how they are fed)."""
