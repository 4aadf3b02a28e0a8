"""Offers and placement for `fleet offers` / `fleet place`: from the provisioner's
`fleet.api` when a stack is running, else straight from the providers."""
