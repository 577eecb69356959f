"""wabot"""
