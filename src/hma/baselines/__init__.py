"""hma.baselines"""
