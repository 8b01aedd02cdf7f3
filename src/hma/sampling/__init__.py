"""hma.sampling"""
