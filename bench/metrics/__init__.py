"""Metrics of a classifier's logits: their formulas and the on-device accumulator of an evaluation pass
(``compute``), and the one table from which training, the stored columns and reports take every metric's names (``table``)."""
