"""Pure rules about jobs: status transitions, recovery decisions and alert rules."""
