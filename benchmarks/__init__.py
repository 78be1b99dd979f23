"""Speed and accuracy reports; not run by CI (see docs/results.md)."""
