"""The build stage's parts: read the base's files, write the accounts, compute one layer, append it, load it."""
