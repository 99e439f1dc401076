"""hal.runtime."""
