"""`ocs serve` tunes the garbage collector once it serves (see ocs.serve.GC_THRESHOLDS); in a
fresh interpreter, since freezing would otherwise reach the test process."""

from __future__ import annotations

import subprocess
import sys


def test_tune_gc_freezes_start_up_objects_and_raises_the_thresholds() -> None:
    code = (
        "import gc; from ocs import serve; before = gc.get_threshold(); serve.tune_gc();"
        " print(before, gc.get_threshold(), gc.get_freeze_count() > 1000)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split(")")
    from ocs.serve import GC_THRESHOLDS

    assert out[0] + ")" == "(700, 10, 10)"
    assert out[1].strip() + ")" == str(GC_THRESHOLDS)
    assert out[2].strip() == "True"
