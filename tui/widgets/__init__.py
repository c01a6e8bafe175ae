"""Widgets of the console; each owns one view, driven by a reactive field."""
