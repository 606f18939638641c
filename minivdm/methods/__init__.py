"""Methods that are procedures rather than networks: sampling pipelines, editing, curation steps."""
