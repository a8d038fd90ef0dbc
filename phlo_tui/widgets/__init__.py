"""The dashboard widgets, one per module, and the glucose display rules they share."""
