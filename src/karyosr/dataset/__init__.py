"""The dataset stages: generated or fetched images to labelled, cropped, split HR shards and their LR
counterparts (synthetic degradation, or registered pairs of real magnifications)."""
