"""Every retry of painsearch, in one place: what is tried again, how often, and why.

- A trial that raises runs again `TRIAL` times (`study.search.retries`), then is recorded as failed.
- A search runs as a Ray task on the driver's node (so a lost worker node takes only trials, which Tune runs
  again from their checkpoints), and Ray runs it again `SEARCH_TASK` times when its process is lost: the task
  itself continues from what the store holds (Tune's state, each trial's latest checkpoint), so the study goes on
  without `--resume`. An error the search raises is not retried: it is
  reported, and `--resume` continues that search.
- Scoring the test split and explaining with LIME are Ray tasks tried `SCORING_TASK` / `LIME_TASK`
  more times when their worker is lost.
- A Ray Train run restarts its worker group `TRAIN_RUN` times (Tune retries the whole trial instead).
- Store operations retry transient failures (connection refused or reset, timeouts, 5xx, throttling)
  with exponential backoff for up to `STORE_PATIENCE_S` seconds (`pipelines.storage.store`);
  pyarrow's own S3 client tries each request `S3_CLIENT_ATTEMPTS` times inside that.
"""

from __future__ import annotations

TRIAL = 1
SEARCH_TASK = 3
SCORING_TASK = 1
LIME_TASK = 1
TRAIN_RUN = 0
S3_CLIENT_ATTEMPTS = 2
STORE_PATIENCE_S = 300.0
STORE_FIRST_WAIT_S = 1.0
STORE_MAX_WAIT_S = 30.0
