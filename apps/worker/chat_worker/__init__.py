"""The worker: consumes accepted messages from the broker, stores them, fans them out."""
