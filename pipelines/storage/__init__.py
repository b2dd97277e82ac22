"""Where painsearch writes: `store` (one view of a local folder or an S3 prefix, atomic writes) and `s3`
(the S3 filesystem, its settings and its errors)."""

from pipelines.storage.s3 import s3_env
from pipelines.storage.store import Store, open_store

__all__ = ["Store", "open_store", "s3_env"]
