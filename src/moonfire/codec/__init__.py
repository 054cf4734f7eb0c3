"""What moonfire knows about each video codec: sample entries, parameter sets, key frames."""
