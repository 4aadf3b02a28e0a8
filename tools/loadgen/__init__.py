"""`fleet loadgen`: open-loop A2A load against hosted agents (see tools.loadgen.engine)."""
