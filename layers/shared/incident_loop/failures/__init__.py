"""Failure persistence and recovery tracking (seed 002)."""
