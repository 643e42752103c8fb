"""Lightning callbacks: NaN guard, feature diagnostics, prediction tables."""
