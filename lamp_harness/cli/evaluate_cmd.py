"""`lamp evaluate` (being written: registers nothing yet)."""
