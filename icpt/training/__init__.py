"""Training a projector: the collator, trainer and metrics (`trainer`), one run from arguments (`run`), prompt rows
fitted per concept (`prompt_fitting`) and the identity targets made of them (`identity_targets`)."""
