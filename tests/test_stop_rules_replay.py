"""benchmarks/stop_rules.py replays the stopping rule offline; its replay must end where a real run ends."""

import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from napari_dip_l0 import DipL0Run
from napari_dip_l0.core.presets import get_preset
from napari_dip_l0.data import camera_frame

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
stop_rules = pytest.importorskip("stop_rules")


@pytest.mark.parametrize("rise", [0.0, 1.2])
def test_the_replayed_rule_keeps_and_ends_where_a_run_does(rise):
    clean = np.clip(np.add.outer(np.linspace(0, 1, 32), np.linspace(0, 0.5, 32)), 0, 1)
    noisy = camera_frame(clean, peak=20, seed=3)[0]
    preset = replace(get_preset("denoise"), patience=20, rise=rise, iterations=300, width=8)

    run = DipL0Run(noisy, "denoise", preset=preset, device="cpu")
    fitted = [s for s in run if s.losses]
    ended, kept = len(fitted), run.stopped_at[0]  # one snapshot a step, the last where the rule ended it
    assert kept is not None and ended < preset.iterations  # the rule, not the cap, ended it
    assert (ended < kept + preset.patience) == (rise > 0)  # with a rise, the rise ended it

    t = stop_rules.trace(lambda p: DipL0Run(noisy, "denoise", preset=p, device="cpu"), lambda img: 0.0,
                         preset, preset.iterations)
    _, replay_kept, replay_ended = stop_rules.replay(t, preset.patience, preset.patience, preset.min_improvement,
                                                     rise, preset.iterations)
    assert (replay_kept, replay_ended) == (kept, ended)
