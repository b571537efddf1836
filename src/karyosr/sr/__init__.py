"""Super-resolution: architectures, losses, training data, training, inference, the perceptual feature
network and the interpolation baselines."""
