"""hma.data"""
