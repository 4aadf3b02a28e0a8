"""The agent brain: Claude with fleet tools, a rule policy without a key, and A2A agent `fleet`."""
