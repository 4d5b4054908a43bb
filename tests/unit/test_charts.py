from __future__ import annotations

import re

import pytest

from ocs.charts import HEIGHT, PAD_BOTTOM, PAD_TOP, bar_chart


def test_bars_scale_to_the_largest_value() -> None:
    svg = bar_chart(["a", "b", "c"], [0, 5, 10], title="Calls <per> day")
    heights = [float(h) for h in re.findall(r'<rect [^>]*height="([0-9.]+)"', svg)]
    assert heights == [0.0, (HEIGHT - PAD_TOP - PAD_BOTTOM) / 2, HEIGHT - PAD_TOP - PAD_BOTTOM]
    assert "Calls &lt;per&gt; day" in svg and "<script" not in svg
    assert svg.count("<text") == 3


def test_empty_and_all_zero_data() -> None:
    assert "<rect" not in bar_chart([], [], title="none")
    svg = bar_chart(["x", "y"], [0, 0], title="zeros", every=2)
    assert svg.count('height="0.0"') == 2 and svg.count("<text") == 1
    with pytest.raises(ValueError):
        bar_chart(["x"], [1, 2], title="bad")
