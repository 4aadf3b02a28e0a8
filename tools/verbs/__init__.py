"""One module per `fleet` verb; each defines `register(sub)`."""
