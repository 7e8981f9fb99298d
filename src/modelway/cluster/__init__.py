"""Model clusters: modelway as a FastChat / DB-GPT model worker, and as their controller."""
