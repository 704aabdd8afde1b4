"""Planning, before anything trains: the pure planner, the one-batch loss check and the code fingerprints that make a cell stale."""
