"""``geometry.small_linalg``: numpy.linalg's routines on small float64 matrices without the wrapper give the public
functions' values bit for bit (and other dtypes go through the public functions)."""

from __future__ import annotations

import numpy as np

from handypriors_core.geometry import small_linalg


def test_small_linalg_equals_numpy_linalg_bit_for_bit():
    rng = np.random.default_rng(3)
    for n in (3, 6):
        for _ in range(20):
            a = rng.normal(size=(n, n))
            spd = a @ a.T + n * np.eye(n)
            b = rng.normal(size=n)
            for mine, theirs in zip(small_linalg.svd(a), np.linalg.svd(a), strict=True):
                assert mine.dtype == theirs.dtype and np.array_equal(mine, theirs)
            for mine, theirs in zip(small_linalg.eigh(spd), np.linalg.eigh(spd), strict=True):
                assert np.array_equal(mine, theirs)
            assert np.array_equal(small_linalg.eigvalsh(spd), np.linalg.eigvalsh(spd))
            assert np.array_equal(small_linalg.solve(spd, b), np.linalg.solve(spd, b))
            assert np.array_equal(small_linalg.inv(spd), np.linalg.inv(spd))
            assert small_linalg.det(a) == float(np.linalg.det(a))
    single = rng.normal(size=(3, 3)).astype(np.float32)  # the public function's precision for other dtypes
    for mine, theirs in zip(small_linalg.svd(single), np.linalg.svd(single), strict=True):
        assert mine.dtype == np.float32 and np.array_equal(mine, theirs)
    assert small_linalg.eigvalsh(single @ single.T).dtype == np.float32
