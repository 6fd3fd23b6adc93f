"""Image files and bytes -> RGB pictures (or the reason they cannot be), and pixels for a backbone."""
