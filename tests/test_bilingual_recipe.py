"""Study B's pieces: log-spaced checkpoints and the choice of the mid-training checkpoint."""

import pytest

from babelscope.errors import UserError
from babelscope.recipes.study_b import pick_mid
from babelscope.train.loop import log_spaced


def test_log_spaced_checkpoints():
    points = log_spaced(64_000, 4, 1 / 64)
    assert points == [1000, 4000, 16000, 64000]
    assert log_spaced(10, 5, 0.5) == [5, 6, 7, 8, 10]
    assert log_spaced(1000, 1, 0.1) == [1000]


def test_pick_mid_takes_the_lowest_mixed_share_before_the_end():
    rows = [{"layer": 1, "train_tokens": t, "checkpoint": f"step-{t}", "mixed_share": m}
            for t, m in [(10, 0.9), (100, 0.4), (1000, 0.5), (10000, 0.1)]]
    rows.append({"layer": 0, "train_tokens": 100, "checkpoint": "step-100", "mixed_share": 0.0})
    assert pick_mid(rows, 1)["checkpoint"] == "step-100"  # the final (0.1) is excluded
    with pytest.raises(UserError, match="two checkpoints"):
        pick_mid(rows[-1:], 0)
