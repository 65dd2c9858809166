"""Mail as data, with no I/O: parsing bytes into a message, and the pure decisions on it.

- `parse`: raw bytes → `ParsedMessage`; never raises on broken mail;
- `rules`: who sent it (a person, a machine, staff, ourselves) and whether it gets an ack.
"""
