"""gwas."""
