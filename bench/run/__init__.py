"""Running a plan: the driver of `bench run`, the launchers (local, pool, Ray, SLURM), the progress display and the sharing of cores."""
