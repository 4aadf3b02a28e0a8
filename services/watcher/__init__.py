"""The watcher: unit telemetry in, per-pool metrics out, dead units declared failed.

`units` holds the unit table and the failure decision, `windows` the per-pool
aggregates and sliding windows, `prometheus` the optional external demand
source; all three are pure. `service` wires them to NATS and the store.
"""
