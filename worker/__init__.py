"""The warm worker: a Prefect worker type that runs flow runs in threads of a warm process."""
