"""Side-by-side download benchmark: this project against aria2c, curl, wget and requests.

Run ``python -m benchmarks --help`` from the repository root; see README.md.
"""
