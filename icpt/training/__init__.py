"""Training a projector: the collator, trainer and metrics (`trainer`), one run from arguments (`run`), prompt rows
fitted per concept (`prompt_fitting`), the identity targets made of them (`identity_targets`), and swapped twins,
recognition episodes only the rows can answer (`swapped_twins`)."""
