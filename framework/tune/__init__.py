"""`vadblocks tune`: the study, its search space, its starting trials."""
