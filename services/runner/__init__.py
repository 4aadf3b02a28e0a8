"""The hosted-agent runner: Claude (or simulated) agents served over A2A, scaled as a pool."""
