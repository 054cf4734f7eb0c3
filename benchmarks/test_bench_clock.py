"""``ClockAdjuster.adjust`` cost per call, both twins.

``adjust`` runs once per video frame.  Each round feeds one minute of realistic 30 fps
durations (1800 calls) to an adjuster that is shortening at the 500 ppm cap, so a shift happens
every ~0.7 frames; divide the reported time by 1800 for the per-call cost.
"""

import random

FRAMES_PER_ROUND = 1800
_rng = random.Random(1)
CAMERA_DURATIONS = [_rng.randint(2993, 3005) for _ in range(FRAMES_PER_ROUND)]


def test_adjust_one_minute_of_frames(benchmark, impl) -> None:
    adjuster = impl.clock.ClockAdjuster(-1_000_000)
    adjust = adjuster.adjust

    @benchmark
    def _run() -> None:
        for duration in CAMERA_DURATIONS:
            adjust(duration)
