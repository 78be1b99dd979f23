"""ahop: associative-memory (Hopfield) networks in pure PyTorch."""
