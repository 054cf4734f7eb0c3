"""From a camera to the storage engine: sources, streamers, rotation and the recording daemon."""
