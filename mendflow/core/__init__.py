"""The domain core: contracts (models), errors, the validated config, findings and the score.

The ground floor: it imports nothing else of mendflow's (see the import-linter
contracts in ``pyproject.toml``).
"""
