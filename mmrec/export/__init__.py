"""Export: versioned SavedModels in the layout TF Serving polls."""
