"""Test fixture plugin whose hook module cannot be imported."""
