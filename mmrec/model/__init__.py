"""The two-tower retrieval model and its layers (tf.keras, Keras 2)."""
