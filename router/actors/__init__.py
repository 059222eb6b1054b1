"""Thin pykka actors over the pure cores: provider, supervisor, budget."""
