"""hal.core."""
