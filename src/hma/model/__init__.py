"""hma.model"""
