"""genetics."""
