"""The audit stage: what an image is made of and how it was made (build information, SBOM, provenance)."""
