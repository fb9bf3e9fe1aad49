"""`lamp rank` (being written: registers nothing yet)."""
