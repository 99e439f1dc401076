"""Measured transfer cost models (JSON), one per adapter family; see hal.cost."""
