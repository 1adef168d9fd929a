"""Training: features, the scorer's fit, validation, the threshold, export and int8."""
