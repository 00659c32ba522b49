"""Tables and figures of the paper from evaluation records and run logs."""
