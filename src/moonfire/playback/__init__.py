"""Reading recordings back: segments, the virtual .mp4 and export planning."""
