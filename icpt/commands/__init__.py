"""The `icpt` command line: the dispatcher (`cli`), what every parser shares (`arguments`), and one module per
command."""
