# Generated from proto/ by clients/python/scripts/generate.py. Do not edit.
