"""Qt widgets (imported only where a viewer exists)."""
