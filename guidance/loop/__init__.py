"""The per-frame guidance loop: frames -> tool poses -> registration -> poses in patient, as
events."""
