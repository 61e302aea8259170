"""Who is asking: users, passwords, login sessions and API tokens, and what
each role may do."""
