"""Sample file directories and the durable protocol that keeps database and files in step."""
