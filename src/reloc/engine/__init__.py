"""Training, inference and evaluation engines."""
