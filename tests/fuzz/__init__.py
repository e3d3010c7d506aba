"""Property-based fuzzing of every parser of outside input (``make fuzz``)."""
