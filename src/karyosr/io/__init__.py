"""Files in and out: downloads and archives, raw image decoding, Parquet shards, atomic writes, exported images."""
