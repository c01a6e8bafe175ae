"""Screens of the console; they compose widgets and handle their messages."""
