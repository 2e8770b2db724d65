"""The generated world: identities, scenes and photos (`world`), the questions asked about them (`tasks`), and the
pretraining of a backbone on them (`pretraining`)."""
