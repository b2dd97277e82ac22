"""The report's settings, typed, each default defined once (the CLI's defaults and help come from here)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from pipelines.config import Strict

TARGET_RECALL = 0.8  # missing pain is the costly error for people who cannot say that they hurt
DEFAULT_THRESHOLD = 0.5  # where a search has no threshold of its own: the trained model's own decision
Calibration = Literal["none", "temperature", "platt"]
CALIBRATIONS: tuple[str, ...] = ("none", "temperature", "platt")


class LimeConfig(Strict):
    """How the global LIME heatmaps are made."""

    num_samples: int = Field(300, ge=10, description="perturbed samples per explanation")
    images_per_class: int = Field(8, ge=1, description="images explained per predicted class and dataset")
    n_segments: int = Field(40, ge=2, description="SLIC superpixels per image")
    hide_color: float | None = Field(0.0, description="value hidden superpixels take (None: each superpixel's mean colour)")
    positive_only: bool = Field(True, description="keep only the positive LIME weights")
    null_seeds: int = Field(5, ge=1, description="re-initialised copies of each network (one seed each) whose maps "
                            "make the null a trained map is held against")
    seed: int = 0


class ReportConfig(Strict):
    """What `painsearch analyze` computes besides the tables that need no setting."""

    bootstrap: int = Field(1000, ge=10, description="bootstrap resamples (subjects resampled)")
    lime: LimeConfig | None = Field(LimeConfig(), description="None: no LIME heatmaps")
    ratings: str | None = Field(None, description="a CP-PAIN ratings.csv: adds the raters' agreement")
    phantom_truth: str | None = Field(None, description="the phantom's _phantom_truth.csv: where its pain regions are")
    target_recall: float = Field(TARGET_RECALL, gt=0, le=1, description="the pain recall each search's threshold is "
                                 "chosen for, on its validation split")
    calibration: Calibration = Field("temperature", description="post-hoc calibration fitted on each search's "
                                     "validation split, its effect shown on the test split: none, temperature, platt")
