"""Training: the TFX Trainer component with every training knob as a parameter."""
