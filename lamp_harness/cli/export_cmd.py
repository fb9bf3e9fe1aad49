"""`lamp export` (being written: registers nothing yet)."""
