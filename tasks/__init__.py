"""LightningModules that wire ahop models to losses, metrics and logging."""
