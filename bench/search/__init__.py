"""People search and contact matching on PostgreSQL: latency over HTTP and of the backend alone."""
