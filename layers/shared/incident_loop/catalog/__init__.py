"""The error catalog (seed 002): reviewed entries a failure is matched against."""
