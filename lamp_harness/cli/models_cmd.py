"""`lamp models` (being written: registers nothing yet)."""
