"""`lamp data` (being written: registers nothing yet)."""
