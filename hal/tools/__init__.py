"""hal.tools."""
