"""hma.apps"""
