"""Process wiring: settings, database (embedded or external), migrations, CLI, bootstrap."""
