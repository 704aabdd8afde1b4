"""The results folder: parquet rows and histories written atomically and read defensively, the status words, where a
grid stands, and the export file that carries a grid's results to another machine."""
