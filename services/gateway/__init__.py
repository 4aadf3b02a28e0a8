"""The gateway: fleet.api composites (stats, health, report, provision, release, cleanup_idle)."""
