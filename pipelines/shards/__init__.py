"""Parquet shards of preprocessed faces: `schema` (columns, layout, ids), `read` (open a finished set),
`prepare` (`painsearch data prepare`: sources -> shards) and `breakdown` (the paper's Table 2)."""
