"""``ClockAdjuster`` (brief §3.4, fixed logic of bbe04f9), run against both twins.

The vectors are the brief's: one minute of 30 fps frames (1800 x 3000 units = 5,400,000) fed
through an adjuster built from the previous recording's ``local_time_delta``.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

import moonfire_core._clock_py as python_twin

FRAME_90K = 3000
FRAMES_PER_MINUTE = 1800
MINUTE_90K = FRAME_90K * FRAMES_PER_MINUTE  # 5,400,000 = the correction window
MAX_DURATION = 2**31 - 1


def one_minute(impl, delta: int | None) -> list[int]:
    adjuster = impl.clock.ClockAdjuster(delta)
    return [adjuster.adjust(FRAME_90K) for _ in range(FRAMES_PER_MINUTE)]


def rust_reference(delta: int | None, durations: list[int]) -> list[int]:
    """A literal transcription of the fixed Rust ``new`` + ``adjust`` loop (brief §3.4)."""
    if delta is None or -60 <= delta <= 60:
        every_minus_1, ndir = None, 0
    elif delta <= -2700:
        every_minus_1, ndir = 1999, 1
    elif delta >= 2700:
        every_minus_1, ndir = 1999, -1
    elif delta < -60:
        every_minus_1, ndir = 5_400_000 // -delta - 1, 1
    else:
        every_minus_1, ndir = 5_400_000 // delta - 1, -1
    cur, out = 0, []
    for val in durations:
        if every_minus_1 is not None:
            cur += val
            while cur > every_minus_1 and val > ndir:
                val -= ndir
                cur -= every_minus_1 + 1
        out.append(val)
    return out


@pytest.mark.parametrize("delta", [None, 0, -10, 10, -60, 60], ids=str)
def test_deltas_within_dead_band_leave_durations_unchanged(impl, delta) -> None:
    assert one_minute(impl, delta) == [FRAME_90K] * FRAMES_PER_MINUTE


@pytest.mark.parametrize(
    ("delta", "allowed", "expected_change"),
    [
        (-540, {2999, 3000}, -540),
        (540, {3000, 3001}, 540),
        (-1_000_000, {2998, 2999}, -2700),  # capped at 500 ppm
        (1_000_000, {3001, 3002}, 2700),
        (-61, {2999, 3000}, -61),  # just outside the dead band
        (61, {3000, 3001}, 61),
    ],
    ids=str,
)
def test_minute_corrects_delta_at_most_500_ppm(impl, delta, allowed, expected_change) -> None:
    out = one_minute(impl, delta)
    assert set(out) <= allowed
    assert abs(sum(out) - (MINUTE_90K + expected_change)) <= 1


@pytest.mark.parametrize("delta", [-1_000_000, -61], ids=str)
def test_shortening_never_turns_a_duration_of_one_into_zero(impl, delta) -> None:
    adjuster = impl.clock.ClockAdjuster(delta)
    assert {adjuster.adjust(1) for _ in range(10_000)} == {1}


@pytest.mark.parametrize("delta", [None, -1_000_000, -61, 61, 1_000_000], ids=str)
def test_trailing_zero_stays_zero(impl, delta) -> None:
    adjuster = impl.clock.ClockAdjuster(delta)
    for _ in range(100):
        adjuster.adjust(FRAME_90K)
    assert adjuster.adjust(0) == 0


def test_shortening_after_many_ones_keeps_every_frame_positive(impl) -> None:
    # Ones accumulate `cur` without being shortened; a later frame must not pay it all back.
    adjuster = impl.clock.ClockAdjuster(-1_000_000)
    for _ in range(50_000):
        adjuster.adjust(1)
    assert adjuster.adjust(5) == 1
    assert adjuster.adjust(2) == 1


def test_lengthening_largest_duration_does_not_overflow(impl) -> None:
    adjuster = impl.clock.ClockAdjuster(1_000_000)
    assert adjuster.adjust(MAX_DURATION) == MAX_DURATION + MAX_DURATION // 2000


@pytest.mark.parametrize("bad", [-1, MAX_DURATION + 1, 2**64], ids=str)
def test_out_of_range_duration_is_rejected_naming_the_value(impl, bad) -> None:
    adjuster = impl.clock.ClockAdjuster(540)
    message = rf"^duration_90k {bad} out of range \[0, {MAX_DURATION}\]$"
    with pytest.raises(ValueError, match=message):
        adjuster.adjust(bad)


def test_non_integers_are_rejected_like_operator_index(impl) -> None:
    with pytest.raises(TypeError, match="'float' object cannot be interpreted as an integer"):
        impl.clock.ClockAdjuster(540).adjust(3000.0)
    with pytest.raises(TypeError, match="'str' object cannot be interpreted as an integer"):
        impl.clock.ClockAdjuster("540")


durations = st.lists(
    st.one_of(st.integers(2900, 3100), st.integers(0, 3), st.integers(0, 200_000)),
    max_size=400,
)
deltas = st.one_of(st.none(), st.integers(-5000, 5000), st.integers(-(2**63), 2**63 - 1))


@given(delta=deltas, inputs=durations)
def test_matches_the_rust_loop_and_the_python_twin(impl, delta, inputs) -> None:
    adjuster = impl.clock.ClockAdjuster(delta)
    out = [adjuster.adjust(d) for d in inputs]
    twin = python_twin.ClockAdjuster(delta)
    assert out == [twin.adjust(d) for d in inputs]
    assert out == rust_reference(delta, inputs)


@given(
    delta=deltas,
    inputs=st.lists(st.one_of(st.integers(0, MAX_DURATION), st.integers(0, 4000)), max_size=200),
)
def test_total_change_is_at_most_500_ppm_and_twins_agree(impl, delta, inputs) -> None:
    adjuster = impl.clock.ClockAdjuster(delta)
    out = [adjuster.adjust(d) for d in inputs]
    twin = python_twin.ClockAdjuster(delta)
    assert out == [twin.adjust(d) for d in inputs]
    assert abs(sum(out) - sum(inputs)) <= sum(inputs) * 2700 // MINUTE_90K + 1
    assert all((o == 0) == (d == 0) for o, d in zip(out, inputs, strict=True))
