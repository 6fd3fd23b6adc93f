"""The backbone families (CLIP, SigLIP, DINOv2): resolution, loading, embedding rules, random models."""
