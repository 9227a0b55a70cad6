"""The consent registry: pseudonymous subjects and their consent history."""
