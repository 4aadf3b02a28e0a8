"""fleetplane services: one package per service, meeting only on the wire."""
