"""LightningDataModules for ahop's pipelines: tabular, images, multiple-instance bags, retrieval."""
