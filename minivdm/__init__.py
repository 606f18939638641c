"""minivdm: video diffusion models from scratch."""
