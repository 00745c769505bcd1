"""The worker: a main process that talks to the broker, and a pool that runs tasks."""
