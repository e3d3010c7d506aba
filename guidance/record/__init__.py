"""What a session leaves behind: the SQLite session log and the report."""
