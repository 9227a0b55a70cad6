"""Model registry: model versions and the grants whose images trained or validated them."""
