"""`lamp run` (being written: registers nothing yet)."""
