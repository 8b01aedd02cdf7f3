"""hma.eval"""
