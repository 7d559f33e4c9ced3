"""Processing workers: Pulsar consumers that run thumbnailing and point-cloud tasks."""
