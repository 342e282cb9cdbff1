"""Memory of the whole stack (nginx, a Parley node, PostgreSQL, Redis) on one host."""
