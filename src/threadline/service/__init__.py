"""Use cases: a chat run, its context and its lifecycle."""
