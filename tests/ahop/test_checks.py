"""ahop.checks: the one integer check of the library."""

from __future__ import annotations

import pytest

from ahop.checks import check_int, check_positive_ints
from ahop.layers import Hopfield
from ahop.lshn import LSHN


def test_integer_checks_reject_bools_and_name_the_argument() -> None:
    """One integer check (ahop.checks): ``True`` is not an integer >= 1, as in ahop.lshn."""
    check_positive_ints(a=1, b=7)
    check_int(0, "steps", minimum=0)
    for bad in (True, False, 0, 1.0, "2"):
        with pytest.raises(ValueError, match=rf"num_heads must be an integer >= 1, got {bad!r}"):
            check_positive_ints(num_heads=bad)
    with pytest.raises(ValueError, match="steps must be an integer >= 0, got True"):
        check_int(True, "steps", minimum=0)
    # the library's own checks agree: bools are refused everywhere
    with pytest.raises(ValueError, match="num_heads must be an integer >= 1, got True"):
        Hopfield(input_size=4, num_heads=True)
    with pytest.raises(ValueError, match="latent_dim must be an integer >= 1, got True"):
        LSHN(4, True)
