"""User intent (002): BPE tokenizer, BERT MLM pre-training, user-activity vectors."""
