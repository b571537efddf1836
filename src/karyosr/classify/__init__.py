"""Chromosome classification: backbones, inputs, super-networks, class balancing, augmentation,
training, prediction, karyotype decoding and the classification metrics."""
