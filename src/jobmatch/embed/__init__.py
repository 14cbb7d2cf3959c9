"""Job encoder and member activity embeddings (000): mean, decay and learned aggregators."""
