"""Linear: webhook verification and payloads -> normalized events."""
