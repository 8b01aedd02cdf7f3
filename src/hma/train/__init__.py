"""hma.train"""
