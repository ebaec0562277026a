"""contig."""
