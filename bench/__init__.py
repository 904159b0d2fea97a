"""The benchmark harness behind ``masp bench``: measured runs, not timed tests."""
