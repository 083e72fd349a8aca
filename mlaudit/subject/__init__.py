"""What is audited: the model file or object, the data, the code and
dependencies, and what they say about each other.
"""
