"""Metrics of a classifier's logits: the on-device accumulator of an evaluation pass, and the one table of the metrics a report can show."""
