"""`fleet replay`: the scaler's decide() against reactive baselines in virtual time."""
