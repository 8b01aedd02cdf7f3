"""hma.tokenizer"""
