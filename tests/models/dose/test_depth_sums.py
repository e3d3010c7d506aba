"""The plane-at-a-time running sum against numpy's own, bit for bit."""

import numpy as np
import pytest

from models.dose.depth_sums import cumsum_planes


@pytest.mark.parametrize("shape", [(1, 5), (37, 211), (23, 9, 11)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_equals_numpy_cumsum_bit_for_bit(shape, dtype):
    values = np.random.default_rng(4).normal(size=shape).astype(dtype)
    for v in (values, values[::-1]):          # a reversed view too (upstream sums)
        out = cumsum_planes(v)
        assert out.dtype == dtype
        np.testing.assert_array_equal(out, np.cumsum(v, axis=0))


def test_one_dimensional_and_empty_fall_back_on_numpy():
    np.testing.assert_array_equal(cumsum_planes(np.arange(4.0)), [0.0, 1.0, 3.0, 6.0])
    assert cumsum_planes(np.zeros((0, 3))).shape == (0, 3)
