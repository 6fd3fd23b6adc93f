"""Datasets: AVA.txt and its splits, labels tables of your own ratings, generated sample data."""
