"""`fleet report`: the fleet's last days in the terminal, as JSON or as one HTML file."""
