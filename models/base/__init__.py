"""Shared by every room: errors, input validation, rigid transforms."""
