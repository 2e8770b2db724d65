"""What the `icpt` command tests share."""

MAX_NEW_TOKENS = 6  # the tiny model's answers are noise: a few tokens show the same as many
