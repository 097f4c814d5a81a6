"""Use cases: one small class per thing a user (or a worker) does. Each takes its ports."""
