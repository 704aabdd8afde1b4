"""The results folder: parquet rows and histories written atomically and read defensively, the status words, and where a grid stands."""
