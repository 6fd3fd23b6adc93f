"""Images -> embeddings: device and precision policy, batching, the verified resumable cache."""
