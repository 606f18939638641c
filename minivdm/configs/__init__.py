"""Named configurations: tiny ones for the toy world (CPU) and full-scale ones for published checkpoints."""
