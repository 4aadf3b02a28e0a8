"""A secured deployment: identities, least-privilege grants, the admin step."""
