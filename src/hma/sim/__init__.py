"""hma.sim"""
