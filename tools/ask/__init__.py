"""`fleet ask`: an A2A SendStreamingMessage to the brain, printed as it streams."""
