"""karyosr: super-resolution and classification of low-resolution chromosome images."""

__version__ = "0.1.0"
