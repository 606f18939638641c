"""SVD-style data curation: cuts, motion, text, CLIP scores, the filter pipeline."""
