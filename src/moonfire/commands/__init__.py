"""One module per ``moonfire`` subcommand; see ``moonfire.cli``."""
