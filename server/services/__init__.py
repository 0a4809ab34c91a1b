"""Domain services: the one place where account scoping, permissions and
state rules live. Resolvers, REST handlers and the CLI call these."""
