"""Shared by every room: errors, input validation, reading input files, rigid transforms."""
