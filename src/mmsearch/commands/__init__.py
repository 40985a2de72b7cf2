"""CLI command groups beyond datasets and search: applications, keys, jobs, the server and the quickstart."""
