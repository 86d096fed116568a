"""The command line only: parses arguments, calls the layers below, prints (run.py calls main)."""
