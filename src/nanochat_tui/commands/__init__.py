"""CLI subcommands, one module per group; each exposes add_arguments(name, parser) and run(args)."""
