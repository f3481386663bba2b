"""Scaling is the nearest float32 of the exact value; unscaling recovers every pixel; split bounds."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mnist_data.errors import DatasetError, ParamsError
from mnist_data.transforms import denormalize, normalize, scale_table, split_validation

ALL_PIXELS = np.arange(256, dtype=np.uint8)


@pytest.mark.parametrize(("low", "high"), [(-0.5, 0.5), (0.0, 1.0), (-1.0, 1.0), (0.1, 0.3)])
def test_each_value_is_the_nearest_float32_of_the_exact_value(low, high):
    out = normalize(ALL_PIXELS, low, high)
    assert out.dtype == np.float32
    for x, v in zip(range(256), out, strict=True):
        exact = Fraction(low) + x * (Fraction(high) - Fraction(low)) / 255
        below, above = np.nextafter(v, np.float32(-np.inf)), np.nextafter(v, np.float32(np.inf))
        assert abs(Fraction(float(v)) - exact) <= abs(Fraction(float(below)) - exact)
        assert abs(Fraction(float(v)) - exact) <= abs(Fraction(float(above)) - exact)


def test_zero_to_one_matches_tf_reader_up_to_rounding():
    tf = ALL_PIXELS.astype(np.float32) * (1.0 / 255.0)  # what TF's reader computed
    np.testing.assert_allclose(normalize(ALL_PIXELS, 0.0, 1.0), tf, rtol=0, atol=1e-7)


@given(low=st.floats(-100, 100), width=st.floats(0.01, 100))
def test_denormalize_recovers_every_pixel(low, width):
    high = low + width
    images = np.tile(ALL_PIXELS, 3).reshape(3, 16, 16)
    np.testing.assert_array_equal(denormalize(normalize(images, low, high), low, high), images)


def test_denormalize_rejects_values_that_are_not_scaled_pixels():
    values = scale_table(-0.5, 0.5)[:4].copy()
    values[2] += np.float32(0.001)
    with pytest.raises(DatasetError, match="not a pixel scaled onto"):
        denormalize(values, -0.5, 0.5, "train.npz")


def test_normalize_requires_uint8():
    with pytest.raises(TypeError, match="uint8"):
        normalize(np.zeros(3, dtype=np.int16), 0.0, 1.0)


def test_split_validation_bounds():
    assert split_validation(10, 3) == (slice(0, 3), slice(3, 10))
    assert split_validation(10, 0) == (slice(0, 0), slice(0, 10))
    with pytest.raises(ParamsError, match=r"split.validation_size.*is 11, expected 0..10"):
        split_validation(10, 11)
