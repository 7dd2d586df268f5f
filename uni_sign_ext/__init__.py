"""Uni-Sign fork machinery: description loading, alignment, text features and fusion, plus tooling."""
