"""Features: defined once (spec), computed in batch over offline events and event by event in the stream."""
