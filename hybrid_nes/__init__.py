"""hybrid_nes: neural equilibrium solver (JAX / Haiku) + exact dual refinement + polish."""
